# Multi-stage build of every peripherals binary; docker-compose picks one per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \;

FROM debian:bookworm-slim
# curl serves the container health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 peripherals
COPY --from=build /out/ /usr/local/bin/
USER peripherals
ENV PERIPHERALS_LOG_FORMAT=json
CMD ["peripherals"]
