//! Floors (P14, Nebraska's multi-step updates): a channel may name packages every client has to
//! install on its way to the channel's target. A client below a floor is offered the lowest
//! floor above its version first; once it reports that version it gets the next floor, then the
//! target. The rest of the rollout (policy, grants, completion) treats the hop as "the target",
//! so throttling and completion work per hop unchanged.

use crate::domain::Version;
use crate::store::cache::ChannelTarget;
use crate::store::floors::{floor_versions, load_floor};
use crate::store::{Queryable, StoreError};

/// The versions strictly between `reported` and `target`, lowest first: the hops still ahead.
pub fn hops_between<'a>(
    floors: &'a [(Version, String)],
    reported: &Version,
    target: &Version,
) -> Vec<&'a (Version, String)> {
    let mut ahead: Vec<&(Version, String)> = floors
        .iter()
        .filter(|(v, _)| reported < v && v < target)
        .collect();
    ahead.sort_by(|a, b| a.0.cmp(&b.0));
    ahead
}

/// Replaces the channel's target with the next hop when a floor lies between the client's
/// version and the target. `target` is what the channel points at and whether that package
/// blacklists the channel; blacklisted floors are skipped (nobody may install them).
pub async fn next_hop<Q: Queryable>(
    q: &mut Q,
    channel_id: Option<&str>,
    reported: &Version,
    target: ChannelTarget,
) -> Result<ChannelTarget, StoreError> {
    let (Some(channel_id), Some(shared)) = (channel_id, &target) else {
        return Ok(target);
    };
    let (package, false) = &**shared else {
        return Ok(target);
    };
    let Ok(target_version) = Version::parse(&package.version) else {
        return Ok(target);
    };
    if *reported >= target_version {
        return Ok(target);
    }
    let floors = floor_versions(q, channel_id).await?;
    for (_, package_id) in hops_between(&floors, reported, &target_version) {
        if let Some(floor) = load_floor(q, package_id).await? {
            if !floor.channels_blacklist.iter().any(|c| c == channel_id) {
                return Ok(Some(std::sync::Arc::new((floor, false))));
            }
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn floors() -> Vec<(Version, String)> {
        vec![
            (v("2500.0.0"), "b".into()),
            (v("2000.0.0"), "a".into()),
            (v("3000.0.0"), "target-also-floor".into()),
        ]
    }

    #[test]
    fn the_lowest_floor_above_the_client_comes_first() {
        let f = floors();
        let ids = |reported: &str| -> Vec<String> {
            hops_between(&f, &v(reported), &v("3000.0.0"))
                .into_iter()
                .map(|(_, id)| id.clone())
                .collect()
        };
        assert_eq!(ids("1000.0.0"), vec!["a", "b"]);
        assert_eq!(ids("1500.0.0"), vec!["a", "b"]);
        assert_eq!(ids("2000.0.0"), vec!["b"]);
        assert_eq!(ids("2200.0.0"), vec!["b"]);
        assert!(ids("2500.0.0").is_empty());
        assert!(ids("2700.0.0").is_empty());
    }
}
