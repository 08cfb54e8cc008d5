//! Versioned CQL schema: `schema/vN.cql`, applied in order at startup and by
//! `roomcast migrate`. Every statement is idempotent (`IF NOT EXISTS`), so a
//! migration interrupted half-way is simply run again. A database whose
//! recorded version is newer than this binary knows is refused.

use super::{cql_err, ScyllaConfig};
use crate::store::{StoreError, StoreResult};
use scylla::client::session::Session;

/// The schema files this binary knows, version 1 first.
const VERSIONS: &[&str] = &[
    include_str!("schema/v1.cql"),
    include_str!("schema/v2.cql"),
    include_str!("schema/v3.cql"),
];

/// The newest schema version this binary knows.
pub const LATEST: i64 = VERSIONS.len() as i64;

/// Stream rows per bucket (partition): `bucket = seq / BUCKET_SEQS`. Part of the
/// schema: changing it needs a new schema version and a data migration.
pub const BUCKET_SEQS: u64 = 1024;

fn statements(file: &str, ks: &str) -> Vec<String> {
    file.split("\n;")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .map(|s| s.trim().replace("{ks}", ks))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The replication map of `--scylla-replication`: `simple:N` or `dc:N,dc:N`.
pub fn replication(spec: &str) -> StoreResult<String> {
    let bad = || {
        StoreError::Backend(format!(
            "scylla_replication {spec:?}: expected simple:N or DC:N,DC:N"
        ))
    };
    if let Some(n) = spec.strip_prefix("simple:") {
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        return Ok(format!(
            "{{'class': 'SimpleStrategy', 'replication_factor': {n}}}"
        ));
    }
    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
    for dc in spec.split(',') {
        let (name, n) = dc.split_once(':').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad());
        }
        parts.push(format!("'{name}': {n}"));
    }
    Ok(format!("{{{}}}", parts.join(", ")))
}

/// The schema version recorded in the keyspace (0: none yet).
async fn recorded(session: &Session, ks: &str) -> StoreResult<i64> {
    let q = format!("SELECT value FROM {ks}.meta WHERE name = 'schema'");
    match session.query_unpaged(q, ()).await {
        Ok(r) => {
            let rows = r.into_rows_result().map_err(cql_err)?;
            let mut it = rows.rows::<(Option<i64>,)>().map_err(cql_err)?;
            Ok(it
                .next()
                .transpose()
                .map_err(cql_err)?
                .and_then(|r| r.0)
                .unwrap_or(0))
        }
        // No meta table yet: nothing applied.
        Err(_) => Ok(0),
    }
}

/// Creates the keyspace if missing and applies every schema version not yet
/// applied. Returns the version now in place.
pub async fn migrate(session: &Session, cfg: &ScyllaConfig) -> StoreResult<i64> {
    let ks = &cfg.keyspace;
    let create = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
        replication(&cfg.replication)?
    );
    session.query_unpaged(create, ()).await.map_err(cql_err)?;
    let mut version = recorded(session, ks).await?;
    if version > LATEST {
        return Err(StoreError::Backend(format!(
            "keyspace {ks} has schema version {version}, newer than this roomcast knows \
             ({LATEST}): upgrade roomcast before starting it on this database"
        )));
    }
    while version < LATEST {
        let next = version + 1;
        for stmt in statements(VERSIONS[(next - 1) as usize], ks) {
            session.query_unpaged(stmt, ()).await.map_err(cql_err)?;
        }
        if next == 2 {
            move_tenant_directory(session, ks).await?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.meta (name, value) VALUES ('schema', ?)"),
                (next,),
            )
            .await
            .map_err(cql_err)?;
        tracing::info!(keyspace = %ks, version = next, "applied ScyllaDB schema");
        version = next;
    }
    Ok(version)
}

/// Version 2's data step: directory rows of tenants' rooms, written by
/// version 1 into the shared partitions (k = 0 heads), move to their
/// tenant's partitions (`super::dir_key`). Run again after an interruption,
/// it finds what is left and moves that.
async fn move_tenant_directory(session: &Session, ks: &str) -> StoreResult<()> {
    use futures_util::StreamExt;
    let heads_q = format!("SELECT head FROM {ks}.directory_heads WHERE k = 0");
    let rows_q = format!("SELECT name, room FROM {ks}.directory WHERE head = ?");
    let put_head = session
        .prepare(format!(
            "INSERT INTO {ks}.directory_heads (k, head) VALUES (?, ?)"
        ))
        .await
        .map_err(cql_err)?;
    let put = session
        .prepare(format!(
            "INSERT INTO {ks}.directory (head, name, room) VALUES (?, ?, ?)"
        ))
        .await
        .map_err(cql_err)?;
    let del = session
        .prepare(format!(
            "DELETE FROM {ks}.directory WHERE head = ? AND name = ? AND room = ?"
        ))
        .await
        .map_err(cql_err)?;
    let mut heads = Vec::new();
    let mut it = session
        .query_iter(heads_q, ())
        .await
        .map_err(cql_err)?
        .rows_stream::<(String,)>()
        .map_err(cql_err)?;
    while let Some(row) = it.next().await {
        heads.push(row.map_err(cql_err)?.0);
    }
    let mut moved = 0u64;
    for head in heads {
        let mut rows = Vec::new();
        let mut it = session
            .query_iter(rows_q.clone(), (head.as_str(),))
            .await
            .map_err(cql_err)?
            .rows_stream::<(String, String)>()
            .map_err(cql_err)?;
        while let Some(row) = it.next().await {
            let (name, room) = row.map_err(cql_err)?;
            if room.contains('\u{1f}') {
                rows.push((name, room));
            }
        }
        for (name, room) in rows {
            let Some((tenant, _)) = room.split_once('\u{1f}') else {
                continue;
            };
            let (to, _) = super::dir_key(Some(tenant), &name);
            let k = super::dir_heads_partition(Some(tenant));
            session
                .execute_unpaged(&put_head, (k, to.as_str()))
                .await
                .map_err(cql_err)?;
            session
                .execute_unpaged(&put, (to.as_str(), name.as_str(), room.as_str()))
                .await
                .map_err(cql_err)?;
            session
                .execute_unpaged(&del, (head.as_str(), name.as_str(), room.as_str()))
                .await
                .map_err(cql_err)?;
            moved += 1;
        }
    }
    if moved > 0 {
        tracing::info!(keyspace = %ks, rows = moved, "moved tenants' public rooms to per-tenant directory partitions");
    }
    Ok(())
}

/// Fails unless the keyspace holds exactly the schema this binary knows.
pub async fn check(session: &Session, ks: &str) -> StoreResult<()> {
    let v = recorded(session, ks).await?;
    match v.cmp(&LATEST) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(StoreError::Backend(format!(
            "keyspace {ks} has schema version {v}, newer than this roomcast knows ({LATEST}): \
             upgrade roomcast"
        ))),
        std::cmp::Ordering::Less => Err(StoreError::Backend(format!(
            "keyspace {ks} has schema version {v}, this roomcast needs {LATEST}: run `roomcast migrate`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_split_into_statements() {
        let s = statements(VERSIONS[0], "ks");
        assert!(s.len() >= 12, "{s:?}");
        // Version 2 is a data step only.
        assert!(statements(VERSIONS[1], "ks").is_empty());
        assert!(s
            .iter()
            .all(|x| x.starts_with("CREATE TABLE IF NOT EXISTS ks.")));
        let v3 = statements(VERSIONS[2], "ks");
        assert_eq!(v3.len(), 1, "{v3:?}");
        assert!(v3[0].starts_with("CREATE TABLE IF NOT EXISTS ks.room_owner"));
    }

    #[test]
    fn replication_specs() {
        assert!(replication("simple:1").unwrap().contains("SimpleStrategy"));
        let nts = replication("dc1:3,dc2:2").unwrap();
        assert!(nts.contains("'dc1': 3") && nts.contains("'dc2': 2"));
        assert!(replication("dc1").is_err());
        assert!(replication("x'y:3").is_err());
    }
}
