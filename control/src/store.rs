//! The daemon's persisted state: the custom routes added and removed at run
//! time, relative to the config, and the ports rebound at run time, in
//! `[control] state`.
//!
//! A change is written before it is acknowledged, and written so that a
//! crash at any moment leaves either the old file or the new one, never a
//! torn one: the new contents go to a temporary file in the same directory,
//! which is fsynced, renamed over the old name, and the directory fsynced so
//! the rename itself is durable.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::RouteConfig;

/// Format version written in the file.
pub const VERSION: u32 = 1;

/// One custom route as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoute {
    /// Port name.
    pub interface: String,
    /// Destination prefix.
    pub destination: IpNet,
    /// Gateway (`None`: on the link).
    pub next_hop: Option<IpAddr>,
    /// Metric.
    pub metric: u32,
}

impl From<&RouteConfig> for StoredRoute {
    fn from(r: &RouteConfig) -> Self {
        StoredRoute {
            interface: r.interface.clone(),
            destination: r.destination,
            next_hop: r.next_hop,
            metric: r.metric,
        }
    }
}

impl From<&StoredRoute> for RouteConfig {
    fn from(r: &StoredRoute) -> Self {
        RouteConfig {
            interface: r.interface.clone(),
            destination: r.destination,
            next_hop: r.next_hop,
            metric: r.metric,
        }
    }
}

/// What changed at run time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Routes added by `route add`.
    pub added: Vec<StoredRoute>,
    /// Routes of the config removed by `route remove`.
    pub removed: Vec<StoredRoute>,
    /// Ports bound at run time to something other than their config
    /// binding (`port bind`), by port name.
    #[serde(default)]
    pub bindings: BTreeMap<String, String>,
}

/// A route's identity (interface, destination, next hop), borrowed.
type Identity<'a> = (&'a str, IpNet, Option<IpAddr>);

fn identity(r: &RouteConfig) -> Identity<'_> {
    (&r.interface, r.destination, r.next_hop)
}

fn stored_identity(r: &StoredRoute) -> Identity<'_> {
    (&r.interface, r.destination, r.next_hop)
}

impl State {
    /// The custom routes: the config's, less those removed, plus those
    /// added (an added route that the config now has too is kept once).
    /// Linear in the routes: a full table is applied at every start.
    pub fn apply(&self, config: &[RouteConfig]) -> Vec<RouteConfig> {
        let removed: HashSet<Identity> = self.removed.iter().map(stored_identity).collect();
        let mut out: Vec<RouteConfig> = config
            .iter()
            .filter(|c| !removed.contains(&identity(c)))
            .cloned()
            .collect();
        let mut have: HashSet<Identity> = out.iter().map(identity).collect();
        let added: Vec<RouteConfig> = self
            .added
            .iter()
            .filter(|a| have.insert(stored_identity(a)))
            .map(RouteConfig::from)
            .collect();
        drop(have);
        out.extend(added);
        out
    }

    /// The state that turns `config` routes into `current` ones (a route
    /// whose metric changed is removed and added again).
    pub fn diff(config: &[RouteConfig], current: &[RouteConfig]) -> State {
        fn key(r: &RouteConfig) -> (Identity<'_>, u32) {
            (identity(r), r.metric)
        }
        let in_config: HashSet<_> = config.iter().map(key).collect();
        let in_current: HashSet<_> = current.iter().map(key).collect();
        let added = current
            .iter()
            .filter(|c| !in_config.contains(&key(c)))
            .map(StoredRoute::from)
            .collect();
        let removed = config
            .iter()
            .filter(|o| !in_current.contains(&key(o)))
            .map(StoredRoute::from)
            .collect();
        State {
            version: VERSION,
            added,
            removed,
            bindings: BTreeMap::new(),
        }
    }
}

/// Reads the state file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> io::Result<Option<State>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state: State = serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    if state.version != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: state version {} (this edgefwd reads {VERSION})",
                path.display(),
                state.version
            ),
        ));
    }
    Ok(Some(state))
}

/// Writes the state file atomically and durably (see the module docs).
pub fn save(path: &Path, state: &State) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        serde_json::to_writer(&mut f, state)?;
        f.write_all(b"\n")?;
        let f = f.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dest: &str, nh: Option<&str>, metric: u32) -> RouteConfig {
        RouteConfig {
            interface: "Port3".into(),
            destination: dest.parse().unwrap(),
            next_hop: nh.map(|n| n.parse().unwrap()),
            metric,
        }
    }

    #[test]
    fn diff_then_apply_gives_the_current_routes() {
        let config = vec![
            r("10.1.0.0/16", Some("192.168.20.1"), 100),
            r("10.2.0.0/16", None, 5),
        ];
        let current = vec![
            r("10.2.0.0/16", None, 5),
            r("10.3.0.0/16", Some("192.168.20.2"), 7),
        ];
        let s = State::diff(&config, &current);
        assert_eq!(s.added.len(), 1);
        assert_eq!(s.removed.len(), 1);
        assert_eq!(s.apply(&config), current);
    }

    #[test]
    fn save_replaces_whole_files_and_load_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(load(&path).unwrap(), None);
        let s = State::diff(&[], &[r("10.9.0.0/16", None, 1)]);
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), Some(s.clone()));
        save(&path, &State::diff(&[], &[])).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().added, vec![]);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::write(&path, "{\"version\":1,\"added\":[").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("state.json"));
    }
}
