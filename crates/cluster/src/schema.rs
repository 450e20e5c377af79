//! The schema Rampart owns in its database: created and migrated by
//! `rampart cluster init` (idempotent; concurrent runs wait on one
//! another), checked by every node at connect.
//!
//! Budgets and bans are decided in PL/pgSQL functions so that a login
//! attempt costs one round trip: `rampart.reserve` locks the address's
//! row (then the login's, always in that order, so two nodes never
//! deadlock), counts failures in the window plus reservations in flight,
//! and takes a slot or refuses. Reservations carry a lease: a node killed
//! mid-attempt leaves its slots to expire. Every value comes in as a bind
//! parameter; no SQL is ever built from request bytes.

use tokio_postgres::Client;

/// The version this binary writes and reads.
pub const VERSION: i32 = 2;

/// `MIGRATIONS[n]` takes the schema from version n to n+1.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE rampart.meta (key text PRIMARY KEY, value bytea NOT NULL);

CREATE TABLE rampart.nodes (
    name text PRIMARY KEY,
    version text NOT NULL,
    config_hash text NOT NULL,
    schema_version int NOT NULL,
    pid int NOT NULL,
    started timestamptz NOT NULL,
    last_seen timestamptz NOT NULL
);

CREATE TABLE rampart.bans (
    net text PRIMARY KEY,
    until timestamptz NOT NULL,
    reason text NOT NULL,
    count int NOT NULL,
    changed timestamptz NOT NULL,
    by_node text NOT NULL
);

CREATE FUNCTION rampart.bans_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rampart_bans', NEW.net);
    RETURN NULL;
END $$;

CREATE TRIGGER bans_notify AFTER INSERT OR UPDATE ON rampart.bans
    FOR EACH ROW EXECUTE FUNCTION rampart.bans_notify();

CREATE TABLE rampart.budgets (
    kind "char" NOT NULL,
    key text NOT NULL,
    failures timestamptz[] NOT NULL DEFAULT '{}',
    in_flight int NOT NULL DEFAULT 0,
    lease_until timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);

CREATE TABLE rampart.known_logins (pair text PRIMARY KEY, until timestamptz NOT NULL);

-- Failures still inside the window, oldest first, at most the last 1000.
CREATE FUNCTION rampart.recent(f timestamptz[], within float8) RETURNS timestamptz[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(t ORDER BY t), '{}')
    FROM (SELECT t FROM unnest(f) t
          WHERE t > now() - within * interval '1 second'
          ORDER BY t DESC LIMIT 1000) r
$$;

CREATE FUNCTION rampart.reserve(
    p_addr text, p_amax int, p_awithin float8,
    p_login text, p_pair text, p_lmax int, p_lwithin float8, p_lease float8)
RETURNS TABLE (verdict text, addr_failures int, login_failures int, login_counted bool)
LANGUAGE plpgsql AS $$
DECLARE
    a rampart.budgets;
    l rampart.budgets;
    af int;
    lf int := 0;
    counted bool := false;
    known bool := false;
BEGIN
    INSERT INTO rampart.budgets (kind, key) VALUES ('a', p_addr) ON CONFLICT DO NOTHING;
    SELECT * INTO a FROM rampart.budgets b WHERE b.kind = 'a' AND b.key = p_addr FOR UPDATE;
    a.failures := rampart.recent(a.failures, p_awithin);
    IF a.lease_until < now() THEN a.in_flight := 0; END IF;
    af := cardinality(a.failures);
    IF af + a.in_flight >= p_amax THEN
        RETURN QUERY SELECT 'addr'::text, af, 0, false;
        RETURN;
    END IF;
    IF p_login IS NOT NULL THEN
        SELECT EXISTS (SELECT 1 FROM rampart.known_logins k
                       WHERE k.pair = p_pair AND k.until > now()) INTO known;
        INSERT INTO rampart.budgets (kind, key) VALUES ('l', p_login) ON CONFLICT DO NOTHING;
        SELECT * INTO l FROM rampart.budgets b WHERE b.kind = 'l' AND b.key = p_login FOR UPDATE;
        l.failures := rampart.recent(l.failures, p_lwithin);
        IF l.lease_until < now() THEN l.in_flight := 0; END IF;
        lf := cardinality(l.failures);
        IF NOT known THEN
            IF lf + l.in_flight >= p_lmax THEN
                RETURN QUERY SELECT 'login'::text, af, lf, false;
                RETURN;
            END IF;
            UPDATE rampart.budgets b SET failures = l.failures, in_flight = l.in_flight + 1,
                lease_until = now() + p_lease * interval '1 second'
                WHERE b.kind = 'l' AND b.key = p_login;
            counted := true;
        END IF;
    END IF;
    UPDATE rampart.budgets b SET failures = a.failures, in_flight = a.in_flight + 1,
        lease_until = now() + p_lease * interval '1 second'
        WHERE b.kind = 'a' AND b.key = p_addr;
    RETURN QUERY SELECT 'go'::text, af, lf, counted;
END $$;

CREATE FUNCTION rampart.finish(
    p_addr text, p_awithin float8, p_login text, p_counted bool, p_lwithin float8,
    p_failed bool, p_pair text, p_success bool, p_known_for float8)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    af int;
BEGIN
    UPDATE rampart.budgets b SET
        in_flight = greatest(b.in_flight - 1, 0),
        failures = rampart.recent(CASE WHEN p_failed THEN b.failures || now() ELSE b.failures END, p_awithin)
        WHERE b.kind = 'a' AND b.key = p_addr
        RETURNING cardinality(b.failures) INTO af;
    IF p_login IS NOT NULL AND (p_counted OR p_failed) THEN
        UPDATE rampart.budgets b SET
            in_flight = CASE WHEN p_counted THEN greatest(b.in_flight - 1, 0) ELSE b.in_flight END,
            failures = rampart.recent(CASE WHEN p_failed THEN b.failures || now() ELSE b.failures END, p_lwithin)
            WHERE b.kind = 'l' AND b.key = p_login;
    END IF;
    IF p_success AND p_pair IS NOT NULL THEN
        INSERT INTO rampart.known_logins (pair, until)
            VALUES (p_pair, now() + p_known_for * interval '1 second')
            ON CONFLICT (pair) DO UPDATE SET until = EXCLUDED.until;
    END IF;
    RETURN coalesce(af, 0);
END $$;
"#,
    // 2: certificates and the ACME account (issue 13 §5). Private keys
    // are sealed with the key in `secret_key_file`; challenge answers are
    // public by nature (the CA fetches them over plain HTTP) and are not.
    r#"
CREATE TABLE rampart.acme_accounts (
    directory text PRIMARY KEY,
    credentials bytea NOT NULL,
    updated timestamptz NOT NULL,
    by_node text NOT NULL
);

CREATE TABLE rampart.certs (
    key text PRIMARY KEY,
    chain text NOT NULL,
    private_key bytea NOT NULL,
    not_after timestamptz NOT NULL,
    updated timestamptz NOT NULL,
    by_node text NOT NULL
);

-- One order per certificate at a time: the holder until `until`; a node
-- killed mid-order leaves a lease that simply expires.
CREATE TABLE rampart.order_leases (
    key text PRIMARY KEY,
    holder text NOT NULL,
    until timestamptz NOT NULL
);

CREATE TABLE rampart.challenges (
    kind text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    expires timestamptz NOT NULL,
    by_node text NOT NULL,
    PRIMARY KEY (kind, key)
);

-- Which node has loaded which answer (the publisher waits for the live ones).
CREATE TABLE rampart.challenge_acks (
    kind text NOT NULL,
    key text NOT NULL,
    node text NOT NULL,
    PRIMARY KEY (kind, key, node)
);
"#,
];

/// Creates or migrates the schema; returns (version before, version now).
/// Safe to run on a live cluster and from several places at once.
pub async fn init(client: &mut Client) -> Result<(i32, i32), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // One init at a time (a second waits, then finds nothing to do).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('rampart.schema'))",
        &[],
    )
    .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS rampart;
         CREATE TABLE IF NOT EXISTS rampart.schema_version (version int NOT NULL);",
    )
    .await?;
    let before: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM rampart.schema_version",
            &[],
        )
        .await?
        .get(0);
    for m in MIGRATIONS.iter().skip(before.max(0) as usize) {
        tx.batch_execute(m).await?;
    }
    let now = before.max(MIGRATIONS.len() as i32);
    tx.execute("DELETE FROM rampart.schema_version", &[])
        .await?;
    tx.execute(
        "INSERT INTO rampart.schema_version (version) VALUES ($1)",
        &[&now],
    )
    .await?;
    // The key login names are hashed under, the same on every node.
    let key = random_key();
    tx.execute(
        "INSERT INTO rampart.meta (key, value) VALUES ('login_key', $1) ON CONFLICT DO NOTHING",
        &[&key.as_slice()],
    )
    .await?;
    tx.commit().await?;
    Ok((before, now))
}

/// The schema version in the database; 0 when `rampart cluster init`
/// never ran there.
pub async fn version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('rampart.schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM rampart.schema_version",
            &[],
        )
        .await?
        .get(0))
}

/// Why this node cannot use the schema it found, if it cannot.
pub fn usable(found: i32) -> Result<(), String> {
    match found {
        0 => Err("the cluster schema is missing: run `rampart cluster init`".into()),
        v if v < VERSION => Err(format!(
            "the cluster schema is at version {v}, this rampart needs {VERSION}: run `rampart cluster init`"
        )),
        v if v > VERSION => Err(format!(
            "the cluster schema is at version {v}, newer than this rampart ({VERSION}): upgrade this node"
        )),
        _ => Ok(()),
    }
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
        .expect("the system random source is available");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_says_what_to_do_about_a_schema_it_cannot_use() {
        assert!(usable(0).unwrap_err().contains("rampart cluster init"));
        assert!(usable(VERSION).is_ok());
        assert!(
            usable(VERSION + 1)
                .unwrap_err()
                .contains("upgrade this node")
        );
        assert_eq!(MIGRATIONS.len() as i32, VERSION);
    }
}
