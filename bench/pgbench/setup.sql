-- Helpers for the pgbench ceiling scripts, in their own schema of the benchmark database.
-- The harness runs this once after the services' migrations created their schemas.
CREATE SCHEMA IF NOT EXISTS bench;

-- A UUID with the layout of version 7: 48 bits of Unix time in milliseconds, then random
-- bits. The services make their ids this way, so index inserts land at the same end of
-- the B-tree as theirs do, which random (version 4) ids would not.
CREATE OR REPLACE FUNCTION bench.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  SELECT (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || '7' || substr(md5(random()::text), 1, 3)
          || '8' || substr(md5(random()::text), 1, 15))::uuid
$$;

-- The index key the messaging service stores beside a topic, tenant or project name:
-- the first eight bytes of the name's SHA-256 digest, as a signed integer.
CREATE OR REPLACE FUNCTION bench.messaging_key(name text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT ('x' || encode(substr(sha256(convert_to(name, 'UTF8')), 1, 8), 'hex'))::bit(64)::bigint
$$;

-- Sequence numbers of the log events the log sink ceiling inserts.
CREATE SEQUENCE IF NOT EXISTS bench.log_sequence;
