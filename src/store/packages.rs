//! Packages (with their CoreOS postinstall action and channel blacklist) and channels, including
//! CoreRoller's two blacklist rules: a channel cannot point at a package that blacklists it, and
//! a package cannot blacklist a channel that currently points at it.

use std::collections::HashMap;

use super::{placeholders, Queryable, Row, Store, StoreError};
use crate::domain::{
    new_id, new_time_ordered_id, ActivityClass, Channel, ChannelFields, CoreosAction,
    CoreosActionFields, NewActivity, Package, PackageFields, Severity, ValidationError, Version,
};
use crate::sql_params;

const PACKAGE_SELECT: &str = "SELECT p.id, p.type, p.version, p.url, p.filename, p.description, p.size, p.hash, \
    p.created_ts, p.application_id, p.image_repository, p.image_digest, a.id, a.event, a.chromeos_version, a.sha256, \
    a.needs_admin, a.is_delta, a.disable_payload_backoff, a.metadata_signature_rsa, a.metadata_size, a.deadline, \
    a.created_ts FROM packages p LEFT JOIN coreos_actions a ON a.package_id = p.id";

fn package_from_row(r: &Row) -> Result<Package, StoreError> {
    let coreos_action = match r.opt_text(12)? {
        Some(id) => Some(CoreosAction {
            id,
            event: r.text(13)?,
            chromeos_version: r.text(14)?,
            sha256: r.text(15)?,
            needs_admin: r.boolean(16)?,
            is_delta: r.boolean(17)?,
            disable_payload_backoff: r.boolean(18)?,
            metadata_signature_rsa: r.text(19)?,
            metadata_size: r.text(20)?,
            deadline: r.text(21)?,
            created_ts: r.int(22)?,
        }),
        None => None,
    };
    Ok(Package {
        id: r.text(0)?,
        package_type: r.int(1)?,
        version: r.text(2)?,
        url: r.text(3)?,
        filename: r.text(4)?,
        description: r.text(5)?,
        size: r.text(6)?,
        hash: r.text(7)?,
        created_ts: r.int(8)?,
        application_id: r.text(9)?,
        image_repository: r.text(10)?,
        image_digest: r.text(11)?,
        channels_blacklist: Vec::new(),
        coreos_action,
    })
}

/// Loads packages matching `filter` (a WHERE clause on `p`), with blacklists, newest version first.
pub(crate) async fn load_packages<Q: Queryable>(
    q: &mut Q,
    filter: &str,
    params: Vec<super::SqlValue>,
) -> Result<Vec<Package>, StoreError> {
    let rows = q
        .query(&format!("{PACKAGE_SELECT} WHERE {filter}"), params)
        .await?;
    let mut packages = rows
        .iter()
        .map(package_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if packages.is_empty() {
        return Ok(packages);
    }
    let ids: Vec<super::SqlValue> = packages.iter().map(|p| p.id.clone().into()).collect();
    let rows = q
        .query(
            &format!(
                "SELECT package_id, channel_id FROM package_channel_blacklist WHERE package_id IN ({}) ORDER BY channel_id",
                placeholders(ids.len())
            ),
            ids,
        )
        .await?;
    let mut blacklists: HashMap<String, Vec<String>> = HashMap::new();
    for r in &rows {
        blacklists.entry(r.text(0)?).or_default().push(r.text(1)?);
    }
    for p in &mut packages {
        p.channels_blacklist = blacklists.remove(&p.id).unwrap_or_default();
    }
    packages.sort_by(|a, b| {
        crate::domain::version::cmp_version_text(&b.version, &a.version)
            .then_with(|| b.created_ts.cmp(&a.created_ts))
    });
    Ok(packages)
}

const CHANNEL_SELECT: &str =
    "SELECT id, name, color, created_ts, application_id, package_id FROM channels";

/// Loads channels matching `filter`, each with its package embedded.
pub(crate) async fn load_channels<Q: Queryable>(
    q: &mut Q,
    filter: &str,
    params: Vec<super::SqlValue>,
) -> Result<Vec<Channel>, StoreError> {
    let rows = q
        .query(
            &format!("{CHANNEL_SELECT} WHERE {filter} ORDER BY created_ts, name"),
            params,
        )
        .await?;
    let mut channels = rows
        .iter()
        .map(|r| {
            Ok(Channel {
                id: r.text(0)?,
                name: r.text(1)?,
                color: r.text(2)?,
                created_ts: r.int(3)?,
                application_id: r.text(4)?,
                package_id: r.opt_text(5)?,
                package: None,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let package_ids: Vec<super::SqlValue> = channels
        .iter()
        .filter_map(|c| c.package_id.clone())
        .map(Into::into)
        .collect();
    if !package_ids.is_empty() {
        let filter = format!("p.id IN ({})", placeholders(package_ids.len()));
        let packages = load_packages(q, &filter, package_ids).await?;
        for c in &mut channels {
            c.package = c
                .package_id
                .as_ref()
                .and_then(|id| packages.iter().find(|p| &p.id == id).cloned());
        }
    }
    Ok(channels)
}

pub(crate) async fn insert_action<Q: Queryable>(
    q: &mut Q,
    package_id: &str,
    a: &CoreosActionFields,
    now: i64,
) -> Result<(), StoreError> {
    q.exec(
        "INSERT INTO coreos_actions (id, package_id, event, chromeos_version, sha256, needs_admin, is_delta, \
         disable_payload_backoff, metadata_signature_rsa, metadata_size, deadline, created_ts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sql_params![
            new_id(),
            package_id,
            &a.event,
            &a.chromeos_version,
            &a.sha256,
            a.needs_admin,
            a.is_delta,
            a.disable_payload_backoff,
            &a.metadata_signature_rsa,
            &a.metadata_size,
            &a.deadline,
            now
        ],
    )
    .await?;
    Ok(())
}

/// Checks blacklist entries: channels of this app, and not currently pointing at this package.
async fn check_blacklist<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    package_id: Option<&str>,
    channels: &[String],
) -> Result<(), StoreError> {
    for channel_id in channels {
        let rows = q
            .query(
                "SELECT package_id FROM channels WHERE id = ? AND application_id = ?",
                sql_params![channel_id, app_id],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(ValidationError::new(
                "channels_blacklist",
                format!("channel {channel_id} does not belong to this application"),
            )
            .into());
        };
        if package_id.is_some() && row.opt_text(0)?.as_deref() == package_id {
            return Err(StoreError::Conflict(format!(
                "cannot blacklist channel {channel_id}: it currently points at this package"
            )));
        }
    }
    Ok(())
}

async fn write_blacklist<Q: Queryable>(
    q: &mut Q,
    package_id: &str,
    channels: &[String],
) -> Result<(), StoreError> {
    q.exec(
        "DELETE FROM package_channel_blacklist WHERE package_id = ?",
        sql_params![package_id],
    )
    .await?;
    for channel_id in channels {
        q.exec(
            "INSERT INTO package_channel_blacklist (package_id, channel_id) VALUES (?, ?)",
            sql_params![package_id, channel_id],
        )
        .await?;
    }
    Ok(())
}

pub async fn insert_activity<Q: Queryable>(
    q: &mut Q,
    a: &NewActivity,
    now: i64,
) -> Result<(), StoreError> {
    q.exec(
        "INSERT INTO activity (class, severity, version, application_id, group_id, channel_id, instance_id, description, created_ts) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sql_params![
            a.class.code(),
            a.severity.code(),
            &a.version,
            &a.application_id,
            a.group_id.clone(),
            a.channel_id.clone(),
            a.instance_id.clone(),
            &a.description,
            now
        ],
    )
    .await?;
    Ok(())
}

/// Inserts a package (with its action and blacklist) inside the caller's transaction.
pub(crate) async fn insert_package<Q: Queryable>(
    tx: &mut Q,
    app_id: &str,
    f: &PackageFields,
    now: i64,
) -> Result<Package, StoreError> {
    let id = new_time_ordered_id();
    check_blacklist(tx, app_id, None, &f.channels_blacklist).await?;
    tx.exec(
        "INSERT INTO packages (id, application_id, type, version, url, filename, description, size, hash, \
         image_repository, image_digest, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        sql_params![
            &id,
            app_id,
            f.package_type.code(),
            f.version.as_str(),
            &f.url,
            &f.filename,
            &f.description,
            &f.size,
            &f.hash,
            &f.image_repository,
            &f.image_digest,
            now
        ],
    )
    .await
    .map_err(|e| version_taken(e, &f.version))?;
    if let Some(action) = &f.coreos_action {
        insert_action(tx, &id, action, now).await?;
    }
    write_blacklist(tx, &id, &f.channels_blacklist).await?;
    load_packages(tx, "p.id = ?", sql_params![&id])
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound)
}

impl Store {
    pub async fn list_packages(&self, app_id: &str) -> Result<Vec<Package>, StoreError> {
        let mut db = self.db().clone();
        load_packages(&mut db, "p.application_id = ?", sql_params![app_id]).await
    }

    pub async fn package(&self, app_id: &str, package_id: &str) -> Result<Package, StoreError> {
        let mut db = self.db().clone();
        load_packages(
            &mut db,
            "p.application_id = ? AND p.id = ?",
            sql_params![app_id, package_id],
        )
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound)
    }

    pub async fn package_by_version(
        &self,
        app_id: &str,
        version: &str,
    ) -> Result<Option<Package>, StoreError> {
        super::sources::package_by_version_tx(&mut self.db().clone(), app_id, version).await
    }

    pub async fn create_package(
        &self,
        app_id: &str,
        f: &PackageFields,
        now: i64,
    ) -> Result<Package, StoreError> {
        let mut tx = self.begin().await?;
        let package = insert_package(&mut tx, app_id, f, now).await?;
        tx.commit().await?;
        Ok(package)
    }

    pub async fn update_package(
        &self,
        app_id: &str,
        package_id: &str,
        f: &PackageFields,
        now: i64,
    ) -> Result<Package, StoreError> {
        let mut tx = self.begin().await?;
        let existing = load_packages(
            &mut tx,
            "p.application_id = ? AND p.id = ?",
            sql_params![app_id, package_id],
        )
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound)?;
        let newly: Vec<String> = f
            .channels_blacklist
            .iter()
            .filter(|c| !existing.channels_blacklist.contains(c))
            .cloned()
            .collect();
        check_blacklist(&mut tx, app_id, Some(package_id), &newly).await?;
        tx.exec(
            "UPDATE packages SET type = ?, version = ?, url = ?, filename = ?, description = ?, size = ?, hash = ?, \
             image_repository = ?, image_digest = ? WHERE id = ?",
            sql_params![
                f.package_type.code(),
                f.version.as_str(),
                &f.url,
                &f.filename,
                &f.description,
                &f.size,
                &f.hash,
                &f.image_repository,
                &f.image_digest,
                package_id
            ],
        )
        .await
        .map_err(|e| version_taken(e, &f.version))?;
        if let Some(action) = &f.coreos_action {
            tx.exec(
                "DELETE FROM coreos_actions WHERE package_id = ?",
                sql_params![package_id],
            )
            .await?;
            insert_action(&mut tx, package_id, action, now).await?;
        }
        write_blacklist(&mut tx, package_id, &f.channels_blacklist).await?;
        let package = load_packages(&mut tx, "p.id = ?", sql_params![package_id])
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(package)
    }

    pub async fn delete_package(&self, app_id: &str, package_id: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .exec(
                "DELETE FROM packages WHERE id = ? AND application_id = ?",
                sql_params![package_id, app_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn list_channels(&self, app_id: &str) -> Result<Vec<Channel>, StoreError> {
        let mut db = self.db().clone();
        load_channels(&mut db, "application_id = ?", sql_params![app_id]).await
    }

    pub async fn channel(&self, app_id: &str, channel_id: &str) -> Result<Channel, StoreError> {
        let mut db = self.db().clone();
        load_channels(
            &mut db,
            "application_id = ? AND id = ?",
            sql_params![app_id, channel_id],
        )
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound)
    }

    pub async fn create_channel(
        &self,
        app_id: &str,
        f: &ChannelFields,
        now: i64,
    ) -> Result<Channel, StoreError> {
        let mut tx = self.begin().await?;
        let id = new_id();
        if let Some(package_id) = &f.package_id {
            check_channel_package(&mut tx, app_id, &id, package_id).await?;
        }
        tx.exec(
            "INSERT INTO channels (id, name, color, application_id, package_id, created_ts) VALUES (?, ?, ?, ?, ?, ?)",
            sql_params![&id, &f.name, &f.color, app_id, f.package_id.clone(), now],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!("a channel named {:?} already exists", f.name)),
            other => other,
        })?;
        let channel = load_channels(&mut tx, "id = ?", sql_params![&id])
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)?;
        if let Some(package) = &channel.package {
            channel_package_activity(&mut tx, &channel, package, now).await?;
        }
        tx.commit().await?;
        Ok(channel)
    }

    pub async fn update_channel(
        &self,
        app_id: &str,
        channel_id: &str,
        f: &ChannelFields,
        now: i64,
    ) -> Result<Channel, StoreError> {
        let mut tx = self.begin().await?;
        let existing = load_channels(
            &mut tx,
            "application_id = ? AND id = ?",
            sql_params![app_id, channel_id],
        )
        .await?
        .into_iter()
        .next()
        .ok_or(StoreError::NotFound)?;
        if let Some(package_id) = &f.package_id {
            check_channel_package(&mut tx, app_id, channel_id, package_id).await?;
        }
        tx.exec(
            "UPDATE channels SET name = ?, color = ?, package_id = ? WHERE id = ?",
            sql_params![&f.name, &f.color, f.package_id.clone(), channel_id],
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("a channel named {:?} already exists", f.name))
            }
            other => other,
        })?;
        let channel = load_channels(&mut tx, "id = ?", sql_params![channel_id])
            .await?
            .into_iter()
            .next()
            .ok_or(StoreError::NotFound)?;
        if existing.package_id != channel.package_id {
            if let Some(package) = &channel.package {
                channel_package_activity(&mut tx, &channel, package, now).await?;
            }
        }
        tx.commit().await?;
        Ok(channel)
    }

    pub async fn delete_channel(&self, app_id: &str, channel_id: &str) -> Result<(), StoreError> {
        let n = self
            .db()
            .exec(
                "DELETE FROM channels WHERE id = ? AND application_id = ?",
                sql_params![channel_id, app_id],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

async fn check_channel_package<Q: Queryable>(
    q: &mut Q,
    app_id: &str,
    channel_id: &str,
    package_id: &str,
) -> Result<(), StoreError> {
    let rows = q
        .query(
            "SELECT id FROM packages WHERE id = ? AND application_id = ?",
            sql_params![package_id, app_id],
        )
        .await?;
    if rows.is_empty() {
        return Err(ValidationError::new(
            "package_id",
            format!("package {package_id} does not belong to this application"),
        )
        .into());
    }
    let rows = q
        .query(
            "SELECT 1 FROM package_channel_blacklist WHERE package_id = ? AND channel_id = ?",
            sql_params![package_id, channel_id],
        )
        .await?;
    if !rows.is_empty() {
        return Err(StoreError::Conflict(format!(
            "package {package_id} is blacklisted for this channel"
        )));
    }
    Ok(())
}

pub(crate) async fn channel_package_activity<Q: Queryable>(
    q: &mut Q,
    channel: &Channel,
    package: &Package,
    now: i64,
) -> Result<(), StoreError> {
    insert_activity(
        q,
        &NewActivity {
            class: ActivityClass::ChannelPackageUpdated,
            severity: Severity::Info,
            version: package.version.clone(),
            application_id: channel.application_id.clone(),
            group_id: None,
            channel_id: Some(channel.id.clone()),
            instance_id: None,
            description: format!(
                "Channel {} now points at version {}",
                channel.name, package.version
            ),
        },
        now,
    )
    .await
}

/// The semver of a stored package version text; stored versions were validated on write.
pub(crate) fn stored_version(text: &str) -> Option<Version> {
    Version::parse(text).ok()
}

/// A conflict writing a package row as the clear message: the only unique key an insert or
/// update of a package can hit is (application, version).
fn version_taken(e: StoreError, version: &impl std::fmt::Display) -> StoreError {
    match e {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("a package with version {version} already exists"))
        }
        other => other,
    }
}
