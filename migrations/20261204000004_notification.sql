-- Notification Service: the history of sent notifications.
CREATE SCHEMA IF NOT EXISTS notification;

-- A row is written as `pending` before the sender is called and becomes `sent` once it
-- succeeds; a failed send deletes its row. Only `sent` rows are history. `sent_at` holds
-- the time the request was accepted while a row is pending, then the time of the send.
CREATE TABLE notification.deliveries (
    id        uuid        PRIMARY KEY,
    channel   text        NOT NULL CHECK (channel IN ('email', 'webhook', 'in_app')),
    recipient text        NOT NULL,
    template  text        NOT NULL,
    subject   text        NOT NULL,
    body      text        NOT NULL,
    status    text        NOT NULL CHECK (status IN ('pending', 'sent')),
    sent_at   timestamptz NOT NULL
);

-- Recent history reads the newest sent rows, and pruning skips past them in this order.
CREATE INDEX deliveries_sent_idx ON notification.deliveries (sent_at DESC, id DESC)
    WHERE status = 'sent';
-- Pruning finds pending rows abandoned by a process that stopped mid-send.
CREATE INDEX deliveries_pending_idx ON notification.deliveries (sent_at)
    WHERE status = 'pending';
