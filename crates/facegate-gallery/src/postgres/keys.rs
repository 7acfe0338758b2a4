//! API key records (`KeyStore`) in `facegate_api_keys`.

use super::*;

/// The key columns [`key_row`] reads, times as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) const KEY_COLUMNS: &str = "id, role, label,
    to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_char(revoked AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), hash";

pub(super) fn key_row(r: &postgres::Row) -> KeyRecord {
    KeyRecord {
        id: r.get(0),
        role: r.get(1),
        label: r.get(2),
        created: r.get(3),
        revoked: r.get(4),
        hash: r.get(5),
    }
}

impl KeyStore for PostgresGallery {
    fn insert_key(
        &self,
        id: &str,
        role: &str,
        label: &str,
        hash: &str,
    ) -> Result<(), GalleryError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO facegate_api_keys (id, role, label, hash) VALUES ($1, $2, $3, $4)",
                &[&id, &role, &label, &hash],
            )
            .map(drop)
            .map_err(self.error())
        })
    }

    fn keys(&self) -> Result<Vec<KeyRecord>, GalleryError> {
        self.with(|c| {
            let rows = c
                .query(
                    &format!("SELECT {KEY_COLUMNS} FROM facegate_api_keys ORDER BY created, id"),
                    &[],
                )
                .map_err(self.error())?;
            Ok(rows.iter().map(key_row).collect())
        })
    }

    fn key(&self, id: &str) -> Result<Option<KeyRecord>, GalleryError> {
        self.with(|c| {
            let row = c
                .query_opt(
                    &format!("SELECT {KEY_COLUMNS} FROM facegate_api_keys WHERE id = $1"),
                    &[&id],
                )
                .map_err(self.error())?;
            Ok(row.as_ref().map(key_row))
        })
    }

    fn revoke_key(&self, id: &str) -> Result<bool, GalleryError> {
        self.with(|c| {
            c.execute(
                "UPDATE facegate_api_keys SET revoked = now() WHERE id = $1 AND revoked IS NULL",
                &[&id],
            )
            .map(|n| n > 0)
            .map_err(self.error())
        })
    }

    fn set_key_hash(&self, id: &str, hash: &str) -> Result<(), GalleryError> {
        self.with(|c| {
            c.execute(
                "UPDATE facegate_api_keys SET hash = $2 WHERE id = $1",
                &[&id, &hash],
            )
            .map(drop)
            .map_err(self.error())
        })
    }
}
