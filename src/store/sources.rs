//! Bindings, deliveries and where packages came from (`package_sources`, `package_files`). The
//! transaction-level functions here are the building blocks of `sources::ingest`, which runs one
//! release through them inside a single transaction.

use super::packages::{channel_package_activity, insert_package, load_channels, load_packages};
use super::{Dialect, Queryable, Row, Store, StoreError, Tx};
use crate::domain::{
    new_id, ActivityClass, Application, Binding, BindingFields, Channel, NewActivity, Package,
    PackageFields, Severity, SourceKind, Version,
};
use crate::sql_params;
use sha2::{Digest as _, Sha256};

const BINDING_SELECT: &str =
    "SELECT id, application_id, kind, match_value, channel_id, tag_filter, \
    allow_prerelease, secret, created_ts FROM bindings";

fn binding_from_row(r: &Row) -> Result<Binding, StoreError> {
    let kind_text = r.text(2)?;
    let kind = SourceKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Backend(format!("unknown binding kind {kind_text:?}")))?;
    let secret = r.opt_text(7)?.filter(|s| !s.is_empty());
    Ok(Binding {
        id: r.text(0)?,
        application_id: r.text(1)?,
        kind,
        match_value: r.text(3)?,
        channel_id: r.opt_text(4)?,
        tag_filter: r.text(5)?,
        allow_prerelease: r.boolean(6)?,
        has_secret: secret.is_some(),
        secret,
        created_ts: r.int(8)?,
    })
}

/// One received release and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub id: String,
    pub source: String,
    pub delivery_key: Option<String>,
    pub selector: String,
    pub version: String,
    pub outcome: String,
    pub message: String,
    pub application_id: Option<String>,
    pub package_id: Option<String>,
    #[serde(serialize_with = "crate::domain::model::ser_ts")]
    pub created_ts: i64,
}

const DELIVERY_SELECT: &str =
    "SELECT id, source, delivery_key, selector, version, outcome, message, \
    application_id, package_id, created_ts FROM deliveries";

fn delivery_from_row(r: &Row) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: r.text(0)?,
        source: r.text(1)?,
        delivery_key: r.opt_text(2)?,
        selector: r.text(3)?,
        version: r.text(4)?,
        outcome: r.text(5)?,
        message: r.text(6)?,
        application_id: r.opt_text(7)?,
        package_id: r.opt_text(8)?,
        created_ts: r.int(9)?,
    })
}

/// Where a package came from, for the API and the dashboard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PackageSource {
    pub source: String,
    pub selector: String,
    pub image_tag: String,
    pub metadata: Option<serde_json::Value>,
    pub files: Vec<PackageFileInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageFileInfo {
    pub name: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    pub name: String,
    pub content: Vec<u8>,
    pub sha256: String,
}

async fn check_channel_of_app<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    channel_id: &str,
) -> Result<(), StoreError> {
    let rows = q
        .query(
            "SELECT id FROM channels WHERE id = ? AND application_id = ?",
            sql_params![channel_id, app_id],
        )
        .await?;
    if rows.is_empty() {
        return Err(StoreError::Invalid(crate::domain::ValidationError::new(
            "channel_id",
            "is not a channel of this application",
        )));
    }
    Ok(())
}

impl Store {
    pub async fn list_bindings(&self, app_id: &str) -> Result<Vec<Binding>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{BINDING_SELECT} WHERE application_id = ? ORDER BY created_ts, id"),
                sql_params![app_id],
            )
            .await?;
        rows.iter().map(binding_from_row).collect()
    }

    /// An application by id or exact name (for the CLI and generic webhooks).
    pub async fn app_by_id_or_name(
        &self,
        id_or_name: &str,
    ) -> Result<Option<Application>, StoreError> {
        app_by_id_or_name(&mut self.db().clone(), id_or_name).await
    }

    /// Every binding, all applications (for `/v1.0/info`, the CLI and the dashboard).
    pub async fn all_bindings(&self) -> Result<Vec<Binding>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{BINDING_SELECT} ORDER BY kind, match_value, created_ts"),
                Vec::new(),
            )
            .await?;
        rows.iter().map(binding_from_row).collect()
    }

    pub async fn binding(&self, app_id: &str, binding_id: &str) -> Result<Binding, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("{BINDING_SELECT} WHERE application_id = ? AND id = ?"),
                sql_params![app_id, binding_id],
            )
            .await?;
        rows.first()
            .map(binding_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    /// Bindings of one source selector, across applications.
    pub async fn bindings_for(
        &self,
        kind: SourceKind,
        match_value: &str,
    ) -> Result<Vec<Binding>, StoreError> {
        // One index lookup per webhook: on SQLite it runs inline on a snapshot reader, since a
        // hop to the blocking pool costs more than the read itself.
        match self.db().snapshot().await? {
            Some(mut snapshot) => bindings_matching(&mut snapshot, kind, match_value).await,
            None => bindings_matching(&mut self.db().clone(), kind, match_value).await,
        }
    }

    pub async fn create_binding(
        &self,
        app_id: &str,
        f: &BindingFields,
        now: i64,
    ) -> Result<Binding, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(channel_id) = &f.channel_id {
            check_channel_of_app(&mut tx, app_id, channel_id).await?;
        }
        let id = new_id();
        let secret = f.secret.clone().flatten();
        tx.exec(
            "INSERT INTO bindings (id, application_id, kind, match_value, channel_id, tag_filter, allow_prerelease, secret, created_ts) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            sql_params![
                &id,
                app_id,
                f.kind.as_str(),
                &f.match_value,
                f.channel_id.clone(),
                &f.tag_filter,
                f.allow_prerelease,
                secret,
                now
            ],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "this application already has a {} binding for {:?}",
                f.kind.as_str(),
                f.match_value
            )),
            other => other,
        })?;
        tx.commit().await?;
        self.binding(app_id, &id).await
    }

    pub async fn update_binding(
        &self,
        app_id: &str,
        binding_id: &str,
        f: &BindingFields,
    ) -> Result<Binding, StoreError> {
        let current = self.binding(app_id, binding_id).await?;
        let mut tx = self.begin().await?;
        if let Some(channel_id) = &f.channel_id {
            check_channel_of_app(&mut tx, app_id, channel_id).await?;
        }
        let secret = match &f.secret {
            None => current.secret.clone(),
            Some(s) => s.clone(),
        };
        tx.exec(
            "UPDATE bindings SET kind = ?, match_value = ?, channel_id = ?, tag_filter = ?, allow_prerelease = ?, secret = ? \
             WHERE id = ? AND application_id = ?",
            sql_params![
                f.kind.as_str(),
                &f.match_value,
                f.channel_id.clone(),
                &f.tag_filter,
                f.allow_prerelease,
                secret,
                binding_id,
                app_id
            ],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "this application already has a {} binding for {:?}",
                f.kind.as_str(),
                f.match_value
            )),
            other => other,
        })?;
        tx.commit().await?;
        self.binding(app_id, binding_id).await
    }

    pub async fn delete_binding(&self, app_id: &str, binding_id: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .exec(
                "DELETE FROM bindings WHERE id = ? AND application_id = ?",
                sql_params![binding_id, app_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Recent deliveries, newest first, optionally of one source.
    pub async fn recent_deliveries(
        &self,
        source: Option<SourceKind>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let rows = match source {
            Some(kind) => {
                self.db()
                    .query(
                        &format!("{DELIVERY_SELECT} WHERE source = ? ORDER BY created_ts DESC, id LIMIT {limit}"),
                        sql_params![kind.as_str()],
                    )
                    .await?
            }
            None => {
                self.db()
                    .query(
                        &format!("{DELIVERY_SELECT} ORDER BY created_ts DESC, id LIMIT {limit}"),
                        Vec::new(),
                    )
                    .await?
            }
        };
        rows.iter().map(delivery_from_row).collect()
    }

    /// Activity entries with an id above `after_id`, oldest first (the notifier's feed).
    pub async fn activity_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<crate::domain::Activity>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!(
                    "{} WHERE a.id > ? ORDER BY a.id LIMIT {}",
                    super::instances::ACTIVITY_SELECT,
                    limit.clamp(1, 1000)
                ),
                sql_params![after_id],
            )
            .await?;
        rows.iter()
            .map(super::instances::activity_from_row)
            .collect()
    }

    /// The newest activity id (0 when there is none).
    pub async fn last_activity_id(&self) -> Result<i64, StoreError> {
        let rows = self
            .db()
            .query("SELECT COALESCE(MAX(id), 0) FROM activity", Vec::new())
            .await?;
        rows.first()
            .map(|r| r.int(0))
            .transpose()
            .map(|v| v.unwrap_or(0))
    }

    /// The last activity entry handed to the notification endpoints and when the notifying
    /// replica last wrote it (see `sources::notify`); `None` before any notifier ran.
    pub async fn notifier_cursor(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT last_activity_id, updated_ts FROM notifier_state WHERE id = 1",
                Vec::new(),
            )
            .await?;
        rows.first()
            .map(|row| Ok((row.int(0)?, row.int(1)?)))
            .transpose()
    }

    /// Records that entries up to `activity_id` were handed to the endpoints, at `now` (also
    /// as a heartbeat with an unchanged id). Never moves the cursor back (a replica that lost
    /// the lead may still write a late, older value).
    pub async fn save_notifier_cursor(&self, activity_id: i64, now: i64) -> Result<(), StoreError> {
        self.db()
            .exec(
                "UPDATE notifier_state SET last_activity_id = ?, updated_ts = ? \
                 WHERE id = 1 AND last_activity_id <= ?",
                sql_params![activity_id, now, activity_id],
            )
            .await?;
        Ok(())
    }

    /// Where a package came from and which files it carries (None for API-created packages).
    pub async fn package_source(
        &self,
        package_id: &str,
    ) -> Result<Option<PackageSource>, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT source, selector, image_tag, metadata FROM package_sources WHERE package_id = ?",
                sql_params![package_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let metadata = row
            .opt_text(3)?
            .and_then(|text| serde_json::from_str(&text).ok());
        let files = self
            .db()
            .query(
                "SELECT name, size, sha256 FROM package_files WHERE package_id = ? ORDER BY name",
                sql_params![package_id],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(PackageFileInfo {
                    name: r.text(0)?,
                    size: r.int(1)?,
                    sha256: r.text(2)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(PackageSource {
            source: row.text(0)?,
            selector: row.text(1)?,
            image_tag: row.text(2)?,
            metadata,
            files,
        }))
    }

    pub async fn package_file(
        &self,
        package_id: &str,
        name: &str,
    ) -> Result<PackageFile, StoreError> {
        let rows = self
            .db()
            .query(
                "SELECT name, content, sha256 FROM package_files WHERE package_id = ? AND name = ?",
                sql_params![package_id, name],
            )
            .await?;
        let row = rows.first().ok_or(StoreError::NotFound)?;
        Ok(PackageFile {
            name: row.text(0)?,
            content: row.blob(1)?,
            sha256: row.text(2)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Transaction-level building blocks of `sources::ingest`
// ---------------------------------------------------------------------------

/// Longest delivery key stored as given (`deliveries.delivery_key VARCHAR(255)`).
const DELIVERY_KEY_MAX: usize = 255;

/// The key as stored: as given when it fits the column, else `sha256:<hex>` of it. Hashing
/// keeps replays of long keys (a long repository, tag and digest) deduplicated, where cutting
/// them could make two releases share a key.
pub(crate) fn stored_delivery_key(key: &str) -> String {
    if key.chars().count() <= DELIVERY_KEY_MAX {
        key.to_string()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// The delivery recorded earlier under this key, if any.
pub(crate) async fn find_delivery(
    tx: &mut Tx,
    source: SourceKind,
    key: &str,
) -> Result<Option<Delivery>, StoreError> {
    let rows = tx
        .query(
            &format!("{DELIVERY_SELECT} WHERE source = ? AND delivery_key = ?"),
            sql_params![source.as_str(), stored_delivery_key(key)],
        )
        .await?;
    rows.first().map(delivery_from_row).transpose()
}

/// Records a delivery. A duplicate key is a `Conflict` (the caller treats it as a replay).
pub(crate) async fn insert_delivery<Q: Queryable>(
    q: &mut Q,
    d: &Delivery,
) -> Result<(), StoreError> {
    q.exec(
        "INSERT INTO deliveries (id, source, delivery_key, selector, version, outcome, message, application_id, package_id, created_ts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sql_params![
            &d.id,
            &d.source,
            d.delivery_key.as_deref().map(stored_delivery_key),
            truncate(&d.selector, 255),
            truncate(&d.version, 255),
            truncate(&d.outcome, 20),
            truncate(&d.message, 2000),
            d.application_id.clone(),
            d.package_id.clone(),
            d.created_ts
        ],
    )
    .await?;
    Ok(())
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// Bindings of a selector (inside the ingest transaction, or on the pool).
pub(crate) async fn bindings_matching<Q: Queryable>(
    tx: &mut Q,
    kind: SourceKind,
    match_value: &str,
) -> Result<Vec<Binding>, StoreError> {
    let rows = tx
        .query(
            &format!("{BINDING_SELECT} WHERE kind = ? AND match_value = ? ORDER BY created_ts, id"),
            sql_params![kind.as_str(), match_value],
        )
        .await?;
    rows.iter().map(binding_from_row).collect()
}

const APP_COLUMNS: &str = "id, name, description, team_id, created_ts";

fn app_from_row(r: &Row) -> Result<Application, StoreError> {
    Ok(Application {
        id: r.text(0)?,
        name: r.text(1)?,
        description: r.text(2)?,
        team_id: r.text(3)?,
        created_ts: r.int(4)?,
    })
}

/// An application by id, or else by exact name.
pub(crate) async fn app_by_id_or_name<Q: Queryable>(
    tx: &mut Q,
    id_or_name: &str,
) -> Result<Option<Application>, StoreError> {
    let by_id = tx
        .query(
            &format!("SELECT {APP_COLUMNS} FROM applications WHERE id = ?"),
            sql_params![id_or_name.to_ascii_lowercase()],
        )
        .await?;
    if let Some(row) = by_id.first() {
        return app_from_row(row).map(Some);
    }
    let by_name = tx
        .query(
            &format!(
                "SELECT {APP_COLUMNS} FROM applications WHERE name = ? ORDER BY created_ts LIMIT 1"
            ),
            sql_params![id_or_name],
        )
        .await?;
    by_name.first().map(app_from_row).transpose()
}

/// Creates an application (zero-config ingest) in the default team.
pub(crate) async fn create_app_named(
    tx: &mut Tx,
    name: &str,
    description: &str,
    now: i64,
) -> Result<Application, StoreError> {
    let id = new_id();
    tx.exec(
        "INSERT INTO applications (id, name, description, team_id, created_ts) VALUES (?, ?, ?, ?, ?)",
        sql_params![&id, name, description, crate::domain::seed::DEFAULT_TEAM_ID, now],
    )
    .await?;
    app_by_id_or_name(tx, &id)
        .await?
        .ok_or(StoreError::NotFound)
}

/// A channel of `app_id` by id or name, locked for update on MySQL (promotion compares versions).
pub(crate) async fn lock_channel(
    tx: &mut Tx,
    app_id: &str,
    id_or_name: &str,
) -> Result<Option<Channel>, StoreError> {
    let lock = match tx.dialect() {
        Dialect::Sqlite => "",
        Dialect::Mysql => " FOR UPDATE",
    };
    // Lock the row first (a plain SELECT … FOR UPDATE), then load it with its package.
    let rows = tx
        .query(
            &format!(
                "SELECT id FROM channels WHERE application_id = ? AND (id = ? OR name = ?) ORDER BY created_ts LIMIT 1{lock}"
            ),
            sql_params![app_id, id_or_name.to_ascii_lowercase(), id_or_name],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let id = row.text(0)?;
    Ok(load_channels(tx, "id = ?", sql_params![id])
        .await?
        .into_iter()
        .next())
}

/// Creates a channel (zero-config ingest).
pub(crate) async fn create_channel_named(
    tx: &mut Tx,
    app_id: &str,
    name: &str,
    now: i64,
) -> Result<Channel, StoreError> {
    let id = new_id();
    tx.exec(
        "INSERT INTO channels (id, name, color, application_id, package_id, created_ts) VALUES (?, ?, '#777777', ?, NULL, ?)",
        sql_params![&id, name, app_id, now],
    )
    .await?;
    lock_channel(tx, app_id, &id)
        .await?
        .ok_or(StoreError::NotFound)
}

/// The package of `app_id` with this exact version text, if any.
pub(crate) async fn package_by_version_tx<Q: Queryable>(
    tx: &mut Q,
    app_id: &str,
    version: &str,
) -> Result<Option<Package>, StoreError> {
    Ok(load_packages(
        tx,
        "p.application_id = ? AND p.version = ?",
        sql_params![app_id, version],
    )
    .await?
    .into_iter()
    .next())
}

/// A Docker package of `app_id` with this image repository and digest, if any.
pub(crate) async fn package_by_digest_tx(
    tx: &mut Tx,
    app_id: &str,
    repository: &str,
    digest: &str,
) -> Result<Option<Package>, StoreError> {
    Ok(load_packages(
        tx,
        "p.application_id = ? AND p.image_repository = ? AND p.image_digest = ?",
        sql_params![app_id, repository, digest],
    )
    .await?
    .into_iter()
    .next())
}

/// The highest version among the application's packages (ordered in Rust, semver rules).
pub(crate) async fn highest_version_tx(
    tx: &mut Tx,
    app_id: &str,
) -> Result<Option<Version>, StoreError> {
    let rows = tx
        .query(
            "SELECT version FROM packages WHERE application_id = ?",
            sql_params![app_id],
        )
        .await?;
    let mut best: Option<Version> = None;
    for row in &rows {
        if let Ok(v) = Version::parse(&row.text(0)?) {
            if best.as_ref().is_none_or(|b| &v > b) {
                best = Some(v);
            }
        }
    }
    Ok(best)
}

/// Creates the package and records where it came from, with its files.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_sourced_package(
    tx: &mut Tx,
    app_id: &str,
    fields: &PackageFields,
    source: SourceKind,
    selector: &str,
    image_tag: &str,
    metadata: Option<&serde_json::Value>,
    files: &[(String, Vec<u8>, String)],
    now: i64,
) -> Result<Package, StoreError> {
    let package = insert_package(tx, app_id, fields, now).await?;
    tx.exec(
        "INSERT INTO package_sources (package_id, source, selector, image_tag, metadata) VALUES (?, ?, ?, ?, ?)",
        sql_params![
            &package.id,
            source.as_str(),
            truncate(selector, 255),
            truncate(image_tag, 255),
            metadata.map(|m| m.to_string())
        ],
    )
    .await?;
    for (name, content, sha256) in files {
        tx.exec(
            "INSERT INTO package_files (package_id, name, content, size, sha256) VALUES (?, ?, ?, ?, ?)",
            sql_params![
                &package.id,
                name,
                content.clone(),
                content.len() as i64,
                sha256
            ],
        )
        .await?;
    }
    Ok(package)
}

/// Points the channel at the package and writes the ChannelPackageUpdated activity.
pub(crate) async fn promote(
    tx: &mut Tx,
    channel: &Channel,
    package: &Package,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET package_id = ? WHERE id = ?",
        sql_params![&package.id, &channel.id],
    )
    .await?;
    channel_package_activity(tx, channel, package, now).await
}

/// An activity entry about a release (registered, not promoted, rejected).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn release_activity(
    tx: &mut Tx,
    class: ActivityClass,
    severity: Severity,
    app_id: &str,
    channel_id: Option<&str>,
    version: &str,
    description: &str,
    now: i64,
) -> Result<(), StoreError> {
    super::packages::insert_activity(
        tx,
        &NewActivity {
            class,
            severity,
            version: truncate(version, 255),
            application_id: app_id.to_string(),
            group_id: None,
            channel_id: channel_id.map(str::to_string),
            instance_id: None,
            description: truncate(description, 2000),
        },
        now,
    )
    .await
}
