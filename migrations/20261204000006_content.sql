-- UGC Service: user-generated content items and their review history.
CREATE SCHEMA IF NOT EXISTS content;

-- content_id is chosen by clients. The "C" collation makes its ordering byte order, which
-- the list's newest-first keyset pagination relies on to match the memory store.
CREATE TABLE content.items (
    content_id   text COLLATE "C" NOT NULL CHECK (content_id <> ''),
    tenant_id    text        NOT NULL,
    project_id   text        NOT NULL,
    filename     text        NOT NULL,
    mime_type    text        NOT NULL DEFAULT '',
    size_bytes   bigint      NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    state        text        NOT NULL
        CHECK (state IN ('pending', 'approved', 'rejected', 'archived')),
    reason       text        NOT NULL DEFAULT '',
    labels       jsonb       NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}',
    submitted_at timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    -- The store recognises a duplicate content_id by this constraint's name.
    CONSTRAINT items_pkey PRIMARY KEY (content_id)
);

-- Lists are newest first. Each filter, alone and combined with tenant_id, has an index
-- whose equality columns come first, so the scan also returns rows in list order and
-- stops after one page. project_id with state and no tenant_id uses the project index.
CREATE INDEX items_submitted_idx ON content.items (submitted_at DESC, content_id DESC);
CREATE INDEX items_tenant_idx ON content.items (tenant_id, submitted_at DESC, content_id DESC);
CREATE INDEX items_project_idx ON content.items (project_id, submitted_at DESC, content_id DESC);
CREATE INDEX items_state_idx ON content.items (state, submitted_at DESC, content_id DESC);
CREATE INDEX items_tenant_project_idx ON content.items (tenant_id, project_id, submitted_at DESC, content_id DESC);
CREATE INDEX items_tenant_state_idx ON content.items (tenant_id, state, submitted_at DESC, content_id DESC);
CREATE INDEX items_tenant_project_state_idx ON content.items (tenant_id, project_id, state, submitted_at DESC, content_id DESC);

-- Every review, same-state reason updates included. review_id orders one item's reviews
-- as they were committed, because each is inserted under the item's row lock.
CREATE TABLE content.reviews (
    review_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_id  text COLLATE "C" NOT NULL REFERENCES content.items (content_id) ON DELETE CASCADE,
    from_state  text        NOT NULL
        CHECK (from_state IN ('pending', 'approved', 'rejected', 'archived')),
    to_state    text        NOT NULL
        CHECK (to_state IN ('pending', 'approved', 'rejected', 'archived')),
    reason      text        NOT NULL DEFAULT '',
    reviewer    text        NOT NULL DEFAULT '',
    reviewed_at timestamptz NOT NULL
);

CREATE INDEX reviews_content_idx ON content.reviews (content_id, review_id);
