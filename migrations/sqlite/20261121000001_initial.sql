-- Switchboard initial schema, SQLite flavour. Keep in step with migrations/postgres.
-- All times are BIGINT milliseconds since the Unix epoch (UTC), columns named *_at_ms.
-- Flags are INTEGER 0/1, not BOOLEAN: sqlx's Any driver cannot decode SQLite booleans, and
-- both backends must read every column back the same way.

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_e164    TEXT    NOT NULL UNIQUE,
    name          TEXT    NULL,
    email         TEXT    NULL,
    status        TEXT    NOT NULL DEFAULT 'active'
                          CHECK (status IN ('lead', 'active', 'churned', 'vip')),
    company       TEXT    NULL,
    notes         TEXT    NULL,
    language      TEXT    NULL,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);

CREATE TABLE customer_facts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    fact          TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);
CREATE INDEX customer_facts_customer_recent ON customer_facts (customer_id, created_at_ms DESC);

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id   BIGINT  NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    title         TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'done')),
    priority      INT     NOT NULL,
    due_at_ms     BIGINT  NULL,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);
CREATE INDEX tasks_customer_status_due ON tasks (customer_id, status, due_at_ms);

CREATE TABLE calls (
    call_sid      TEXT    PRIMARY KEY NOT NULL,
    customer_id   BIGINT  NULL REFERENCES customers (id) ON DELETE CASCADE,
    phone         TEXT    NOT NULL,
    to_number     TEXT    NULL,
    direction     TEXT    NOT NULL,
    transport     TEXT    NOT NULL DEFAULT 'media',
    started_at_ms BIGINT  NOT NULL,
    ended_at_ms   BIGINT  NULL,
    outcome       TEXT    NULL,
    summary       TEXT    NULL,
    final_state   TEXT    NULL,
    restarts      INT     NOT NULL DEFAULT 0,
    name_source   TEXT    NULL
);
CREATE INDEX calls_customer_recent ON calls (customer_id, started_at_ms DESC);
CREATE INDEX calls_phone_recent ON calls (phone, started_at_ms DESC);

-- No foreign key to calls: messages are written while the call is live, before its record exists.
CREATE TABLE messages (
    call_sid      TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('caller', 'agent', 'system', 'tool')),
    text          TEXT    NOT NULL,
    interrupted   INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),
    created_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (call_sid, seq)
);

CREATE TABLE call_events (
    call_sid      TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    from_state    TEXT    NOT NULL,
    to_state      TEXT    NOT NULL,
    event         TEXT    NOT NULL,
    at_ms         BIGINT  NOT NULL,
    PRIMARY KEY (call_sid, seq)
);
