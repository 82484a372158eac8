//! Answers for syncers: another rollbridge's `--sync-upstream`, Nebraska's or CoreRoller's
//! syncer. They mirror a channel rather than run it, so they are answered read-only: no
//! instance is registered, no grant counted, no rollout policy applied beyond "updates
//! enabled" (their requests must not show up as machines of the fleet). A syncer that sent
//! `multi_manifest_ok="true"` gets every floor above its version plus the target (Nebraska's
//! multi-manifest shape); a legacy syncer gets `noupdate` while floors lie ahead, because it
//! would otherwise skip them.

use super::handler::{error_app, manifest, no_update, resolve_group};
use super::protocol::{AppRequest, AppResponse, MarkedManifest, Request, UpdateCheck};
use super::status;
use crate::domain::{self, Version};
use crate::rollout::Denial;
use crate::store::Store;

/// `version` Nebraska's and CoreRoller's syncers send (and rollbridge's, for compatibility).
pub const SYNCER_VERSION: &str = "CoreOSUpdateEngine-0.1.0.0";

/// Whether this `<app>` comes from a syncer rather than a machine of the fleet.
pub fn is_syncer(request: &Request<'_>, app: &AppRequest<'_>) -> bool {
    app.multi_manifest_ok || request.version == SYNCER_VERSION
}

/// The answer for a syncer's `<app>`, or `None` when the request comes from a real machine.
pub async fn answer_syncer<'a>(
    store: &Store,
    request: &Request<'_>,
    app: &AppRequest<'a>,
) -> Option<AppResponse<'a>> {
    if !is_syncer(request, app) {
        return None;
    }
    // Boxed: syncers are rare, and an unboxed answer would make every request's future bigger.
    Some(Box::pin(answer(store, app)).await)
}

async fn answer<'a>(store: &Store, app: &AppRequest<'a>) -> AppResponse<'a> {
    let Ok(app_id) = domain::normalize_uuid("appid", &app.appid) else {
        return error_app(app, status::INSTANCE_REGISTRATION_FAILED);
    };
    let group = match store.app_by_id(&app_id).await {
        Ok(Some(_)) => match resolve_group(store, &app_id, &app.track).await {
            Ok(Some(group)) => group,
            Ok(None) => return error_app(app, status::INSTANCE_REGISTRATION_FAILED),
            Err(e) => {
                tracing::error!(error = %e, "omaha: loading group for a syncer failed");
                return error_app(app, status::FAILED_TO_RETRIEVE);
            }
        },
        Ok(None) => return error_app(app, status::INSTANCE_REGISTRATION_FAILED),
        Err(e) => {
            tracing::error!(error = %e, "omaha: loading application for a syncer failed");
            return error_app(app, status::FAILED_TO_RETRIEVE);
        }
    };
    let Ok(version) = Version::parse(&app.version) else {
        return error_app(app, status::INSTANCE_REGISTRATION_FAILED);
    };
    let mut response = AppResponse {
        appid: app.appid.clone(),
        status: status::OK,
        ping: app.ping,
        update_check: None,
        events: app.events.len(),
    };
    if !app.update_check {
        return response;
    }
    let plan = match &group.channel_id {
        Some(channel_id) => match store.channel_plan(channel_id).await {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "omaha: loading a channel for a syncer failed");
                return error_app(app, status::FAILED_TO_RETRIEVE);
            }
        },
        None => None,
    };
    let Some(plan) = plan else {
        return error_app(app, status::denial_status(Denial::NoPackage));
    };
    let target_version = Version::parse(&plan.target.version).ok();
    let up_to_date = target_version.as_ref().is_none_or(|t| version >= *t);
    if plan.blacklisted || up_to_date || !group.policy_updates_enabled {
        response.update_check = Some(no_update(None));
        return response;
    }
    let ahead: Vec<_> = plan
        .floors
        .iter()
        .filter(|f| {
            Version::parse(&f.version)
                .is_ok_and(|v| version < v && target_version.as_ref().is_some_and(|t| v < *t))
                && !f.package.channels_blacklist.contains(&plan.channel_id)
        })
        .collect();
    if !app.multi_manifest_ok {
        response.update_check = Some(if ahead.is_empty() {
            UpdateCheck {
                status: status::OK,
                poll_interval: None,
                manifest: Some(manifest(&plan.target)),
                manifests: Vec::new(),
            }
        } else {
            no_update(None)
        });
        return response;
    }
    let target_floor = plan.floors.iter().find(|f| f.package_id == plan.target.id);
    let mut manifests: Vec<MarkedManifest> = ahead
        .iter()
        .map(|f| MarkedManifest {
            manifest: manifest(&f.package),
            is_floor: true,
            is_target: false,
            floor_reason: f.floor_reason.clone(),
        })
        .collect();
    manifests.push(MarkedManifest {
        manifest: manifest(&plan.target),
        is_floor: target_floor.is_some(),
        is_target: true,
        floor_reason: target_floor
            .map(|f| f.floor_reason.clone())
            .unwrap_or_default(),
    });
    response.update_check = Some(UpdateCheck {
        status: status::OK,
        poll_interval: None,
        manifest: None,
        manifests,
    });
    response
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{parse_response, Manifest, Response};
    use super::*;

    fn manifest(version: &str, codebase: &str) -> Manifest {
        Manifest {
            codebase: codebase.into(),
            version: version.into(),
            package_name: "update.gz".into(),
            package_hash: "aGFzaA==".into(),
            package_size: "10".into(),
            action: None,
        }
    }

    /// The multi-manifest writer and the response parser agree, including a floor whose
    /// payload lives under another codebase than the target's.
    #[test]
    fn multi_manifest_answers_round_trip() {
        let marked = |version: &str, codebase: &str, floor: bool, target: bool| MarkedManifest {
            manifest: manifest(version, codebase),
            is_floor: floor,
            is_target: target,
            floor_reason: if floor {
                format!("reason {version}")
            } else {
                String::new()
            },
        };
        let response = Response {
            apps: vec![AppResponse {
                appid: "{a}".into(),
                status: "ok",
                ping: false,
                update_check: Some(UpdateCheck {
                    status: "ok",
                    poll_interval: None,
                    manifest: None,
                    manifests: vec![
                        marked("2000.0.0", "http://u/2000.0.0/", true, false),
                        marked("3000.0.0", "http://u/3000.0.0/", true, true),
                    ],
                }),
                events: 0,
            }],
        };
        let parsed = parse_response(response.to_xml().as_bytes()).unwrap();
        let check = parsed.apps[0].update_check.clone().unwrap();
        assert_eq!(check.codebases, ["http://u/3000.0.0/"]);
        let m = &check.manifests;
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].codebases, ["http://u/2000.0.0/"]);
        assert!(m[0].is_floor && !m[0].is_target);
        assert_eq!(m[0].floor_reason, "reason 2000.0.0");
        assert!(
            m[1].codebases.is_empty(),
            "the target uses the shared <urls>"
        );
        assert!(m[1].is_floor && m[1].is_target);
        assert_eq!(m[1].packages[0].name, "update.gz");
    }

    #[test]
    fn manifest_and_url_counts_are_bounded() {
        let many = |inner: &str, n: usize| {
            format!(
                r#"<response protocol="3.0"><app appid="a" status="ok"><updatecheck status="ok">{}</updatecheck></app></response>"#,
                inner.repeat(n)
            )
        };
        let manifest = r#"<manifest version="1.0.0"><packages><package name="a" size="1"/></packages></manifest>"#;
        let urls = r#"<urls><url codebase="http://u/"/></urls>"#;
        assert!(parse_response(many(manifest, 32).as_bytes()).is_ok());
        for doc in [many(manifest, 33), many(urls, 33)] {
            assert_eq!(
                parse_response(doc.as_bytes()),
                Err(super::super::protocol::ProtocolError::TooManyManifests)
            );
        }
    }

    #[test]
    fn syncers_are_told_apart_from_machines() {
        let machine = Request {
            version: "update_engine-0.4.10".into(),
            ..Request::default()
        };
        let plain = AppRequest::default();
        assert!(!is_syncer(&machine, &plain));
        let multi = AppRequest {
            multi_manifest_ok: true,
            ..AppRequest::default()
        };
        assert!(is_syncer(&machine, &multi));
        let legacy = Request {
            version: SYNCER_VERSION.into(),
            ..Request::default()
        };
        assert!(is_syncer(&legacy, &plain));
    }
}
