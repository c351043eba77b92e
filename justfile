# Recipes for working on peripherals. Each wraps a plain cargo or docker command that
# the README also gives, so `just` is a convenience, not a requirement.

# Postgres started by docker-compose listens here, away from a local server on 5432.
compose_db := "postgres://postgres:postgres@127.0.0.1:55432/peripherals"
test_db := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")

# List the recipes.
default:
    @just --list

# Run all seven services in one process with in-memory stores.
run:
    cargo run -p peripherals

# Start Postgres from docker-compose and run all seven services against it.
dev:
    docker compose up -d --wait postgres
    PERIPHERALS_STORE=postgres DATABASE_URL={{compose_db}} cargo run -p peripherals

# Build the images and start Postgres and all seven services in containers.
up:
    docker compose up -d --build --wait

# Stop the containers (the Postgres volume is kept).
down:
    docker compose down

# Run every test, the Postgres suite included (TEST_DATABASE_URL, else testcontainers).
test:
    TEST_DATABASE_URL={{test_db}} cargo test --workspace --all-features

# Check formatting and lints, warnings denied.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Run the benchmark suite and rewrite docs/benchmarks.md; `just bench quick` for a short run.
bench mode="full":
    bench/run.sh {{mode}}
