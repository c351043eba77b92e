-- Ceiling of POST /notify: the two statements the notification Postgres store runs for
-- one delivery, each in its own transaction. The row is reserved as pending before the
-- send, then marked sent by an upsert. The service makes the id before both statements.
-- Here it is built from a random number that pgbench draws once for the two, so ids
-- land at random places in the primary key rather than at its end.
\set n random(1, 281474976710655)
INSERT INTO notification.deliveries (id, channel, recipient, template, subject, body, status, sent_at)
VALUES (('00000000-0000-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid,
        'in_app', :recipient, 'welcome_email', '', :body, 'pending', statement_timestamp());
INSERT INTO notification.deliveries (id, channel, recipient, template, subject, body, status, sent_at)
VALUES (('00000000-0000-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid,
        'in_app', :recipient, 'welcome_email', '', :body, 'sent', statement_timestamp())
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, sent_at = EXCLUDED.sent_at;
