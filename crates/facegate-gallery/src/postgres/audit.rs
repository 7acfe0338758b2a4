//! The audit log's rows: appended under a table lock so the MAC chain stays in one line.

use super::*;

/// The audit columns in the order [`audit_row`] reads them.
pub(super) const AUDIT_COLUMNS: &str =
    "id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), actor, action, person, decision, distance, detail, mac, key_id";

/// Appends one audit entry inside the caller's transaction, sealed onto the newest sealed
/// entry when there is a key. The table lock (which reads do not wait for) keeps concurrent
/// writers' entries in one chain, in id order.
pub(super) fn insert_audit(
    client: &mut impl postgres::GenericClient,
    key: Option<&AuditKey>,
    e: &NewAuditEvent,
) -> Result<(), postgres::Error> {
    let (id, at): (i64, String) = {
        client.batch_execute("LOCK TABLE facegate_audit IN SHARE ROW EXCLUSIVE MODE")?;
        let row = client.query_one(
            "SELECT nextval(pg_get_serial_sequence('facegate_audit', 'id')),
                    to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )?;
        (row.get(0), row.get(1))
    };
    let mut entry = AuditEvent {
        id,
        at,
        actor: e.actor.clone(),
        action: e.action.clone(),
        person: e.person.clone(),
        decision: e.decision.clone(),
        distance: e.distance,
        detail: e.detail.clone(),
        mac: None,
        key_id: None,
    };
    if let Some(key) = key {
        let newest = newest_sealed(client)?;
        let newest_mac = newest.as_ref().and_then(|n| n.mac.as_deref());
        entry.mac = Some(audit_chain::seal_next(key, newest_mac, &entry));
        entry.key_id = Some(key.id().to_string());
    }
    client.execute(
        "INSERT INTO facegate_audit (id, at, actor, action, person, decision, distance, detail, mac, key_id)
         VALUES ($1, $2::text::timestamptz, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &entry.id,
            &entry.at,
            &entry.actor,
            &entry.action,
            &entry.person,
            &entry.decision,
            &entry.distance,
            &entry.detail,
            &entry.mac,
            &entry.key_id,
        ],
    )?;
    Ok(())
}

pub(super) fn audit_row(r: &postgres::Row) -> AuditEvent {
    AuditEvent {
        id: r.get(0),
        at: r.get(1),
        actor: r.get(2),
        action: r.get(3),
        person: r.get(4),
        decision: r.get(5),
        distance: r.get(6),
        detail: r.get(7),
        mac: r.get(8),
        key_id: r.get(9),
    }
}

pub(super) fn newest_sealed(
    client: &mut impl postgres::GenericClient,
) -> Result<Option<AuditEvent>, postgres::Error> {
    let row = client.query_opt(
        &format!(
            "SELECT {AUDIT_COLUMNS} FROM facegate_audit WHERE mac IS NOT NULL ORDER BY id DESC LIMIT 1"
        ),
        &[],
    )?;
    Ok(row.as_ref().map(audit_row))
}
