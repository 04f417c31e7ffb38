//! The daemon's persisted state: the custom routes added and removed at run
//! time, relative to the config, and the ports rebound at run time, in
//! `[control] state`.
//!
//! Two files. The *snapshot* (`state.json`) holds the whole state; it is
//! written so that a crash at any moment leaves either the old file or the
//! new one, never a torn one: the new contents go to a temporary file in
//! the same directory, which is fsynced, renamed over the old name, and the
//! directory fsynced so the rename itself is durable. The *journal*
//! (`state.json.journal`) holds the changes made since, one JSON line each,
//! appended and fsynced before the change is acknowledged: a route change
//! at full-table size costs one short line, not a rewrite of a 76 MiB file.
//! A crash can leave only the last line torn, and that change was never
//! acknowledged, so it is dropped on the next start. A write or fsync that
//! fails (disk full, EIO) is rolled back as SQLite rolls back a failed
//! transaction: the journal is cut back to its last whole line and that cut
//! fsynced, so the refused change never comes back at a restart and the
//! next line starts whole. Should the cut itself fail, every change is
//! refused until one succeeds (each refused change tries it again). When the journal
//! grows past half the snapshot (and 1 MiB), the snapshot is rewritten and
//! the journal emptied; replaying a change twice is harmless (adding a
//! route that is there replaces it, removing one that is not does nothing),
//! so a crash between the two steps loses nothing either.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use foldhash::fast::RandomState;
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
    /// Services whose backends changed at run time (`service backend`):
    /// their whole backend list, by service name.
    #[serde(default)]
    pub services: BTreeMap<String, Vec<StoredBackend>>,
    /// Services added at run time (`service add`), each as its
    /// `[[service]]` entry, by name.
    #[serde(default)]
    pub added_services: BTreeMap<String, String>,
    /// Services of the config removed at run time (`service remove`).
    #[serde(default)]
    pub removed_services: Vec<String>,
}

/// The services changed at run time, as the state and journal hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceChanges {
    /// Backend lists, by service name.
    pub backends: BTreeMap<String, Vec<StoredBackend>>,
    /// Services added, each as its `[[service]]` entry, by name.
    pub added: BTreeMap<String, String>,
    /// Services of the config removed.
    pub removed: Vec<String>,
}

/// A service's backend as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBackend {
    /// Its address.
    pub address: std::net::IpAddr,
    /// Its weight.
    pub weight: u32,
    /// Draining (no new flows) rather than active.
    #[serde(default)]
    pub draining: bool,
}

/// One change, as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Routes added (or, for one that exists, its metric changed).
    Add(Vec<StoredRoute>),
    /// Routes removed.
    Remove(Vec<StoredRoute>),
    /// A port rebound (`none`: unbound).
    Bind {
        /// Port name.
        port: String,
        /// The binding.
        binding: String,
    },
    /// A service added, as its `[[service]]` entry.
    ServiceAdd {
        /// Its name.
        service: String,
        /// Its entry.
        entry: String,
    },
    /// A service removed.
    ServiceRemove {
        /// Its name.
        service: String,
    },
    /// A service's backends after a change (the whole list).
    Backends {
        /// The service's name.
        service: String,
        /// Its backends.
        backends: Vec<StoredBackend>,
    },
}

impl Change {
    /// Applies the change to `custom` routes and `bindings` (by port name);
    /// applying it twice gives the same result.
    pub fn apply(&self, custom: &mut Vec<RouteConfig>, bindings: &mut BTreeMap<String, String>) {
        match self {
            Change::Add(routes) => {
                type Owned = (String, IpNet, Option<IpAddr>);
                let key = |i: &str, d: IpNet, n: Option<IpAddr>| -> Owned { (i.to_owned(), d, n) };
                let mut at: std::collections::HashMap<Owned, usize> = custom
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (key(&r.interface, r.destination, r.next_hop), i))
                    .collect();
                for r in routes {
                    let k = key(&r.interface, r.destination, r.next_hop);
                    match at.get(&k) {
                        Some(&i) => custom[i].metric = r.metric,
                        None => {
                            at.insert(k, custom.len());
                            custom.push(RouteConfig::from(r));
                        }
                    }
                }
            }
            Change::Remove(routes) => {
                let gone: HashSet<Identity> = routes.iter().map(stored_identity).collect();
                custom.retain(|r| !gone.contains(&identity(r)));
            }
            Change::Bind { port, binding } => {
                bindings.insert(port.clone(), binding.clone());
            }
            Change::Backends { .. } | Change::ServiceAdd { .. } | Change::ServiceRemove { .. } => {}
        }
    }

    /// Applies the change to the services changed at run time: those
    /// added, those of the config removed, and backend lists.
    pub fn apply_services(&self, s: &mut ServiceChanges) {
        match self {
            Change::Backends { service, backends } => {
                s.backends.insert(service.clone(), backends.clone());
            }
            Change::ServiceAdd { service, entry } => {
                s.added.insert(service.clone(), entry.clone());
            }
            Change::ServiceRemove { service } => {
                s.backends.remove(service);
                if s.added.remove(service).is_none() && !s.removed.contains(service) {
                    s.removed.push(service.clone());
                }
            }
            _ => {}
        }
    }
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
        let in_config: HashSet<_, RandomState> = config.iter().map(key).collect();
        let in_current: HashSet<_, RandomState> = current.iter().map(key).collect();
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
            services: BTreeMap::new(),
            added_services: BTreeMap::new(),
            removed_services: Vec::new(),
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

/// The snapshot and journal of one state path.
pub struct Store {
    path: PathBuf,
    journal: File,
    /// Length of the journal's whole lines, all acknowledged.
    journal_bytes: u64,
    snapshot_bytes: u64,
    /// Why the journal could not be cut back after a failed append; set
    /// until a cut succeeds.
    uncut: Option<io::Error>,
}

/// What a [`Store`] held when opened: the snapshot and the changes since.
pub struct Loaded {
    /// The snapshot (`None`: none written yet).
    pub state: Option<State>,
    /// The journal's changes, in order.
    pub changes: Vec<Change>,
}

/// Journal bytes below which the snapshot is never rewritten.
const JOURNAL_MIN: u64 = 1 << 20;

impl Store {
    /// The journal beside the snapshot at `path`.
    pub fn journal_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".journal");
        path.with_file_name(name)
    }

    /// Opens the state at `path`: reads the snapshot and the journal, and
    /// cuts a torn last line (a change never acknowledged) off the journal.
    pub fn open(path: &Path) -> io::Result<(Store, Loaded)> {
        let state = load(path)?;
        let snapshot_bytes = fs::metadata(path).map_or(0, |m| m.len());
        let jpath = Self::journal_path(path);
        if let Some(dir) = jpath.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let text = match fs::read(&jpath) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut changes = Vec::new();
        for (n, line) in text[..whole].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let c: Change = serde_json::from_slice(line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", jpath.display(), n + 1),
                )
            })?;
            changes.push(c);
        }
        let existed = jpath.exists();
        let journal = OpenOptions::new().create(true).append(true).open(&jpath)?;
        if !existed {
            // The new name must survive a crash as well as the lines.
            let dir = match jpath.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            File::open(dir)?.sync_all()?;
        }
        if whole < text.len() {
            journal.set_len(whole as u64)?;
            journal.sync_all()?;
        }
        let store = Store {
            path: path.to_owned(),
            journal,
            journal_bytes: whole as u64,
            snapshot_bytes,
            uncut: None,
        };
        Ok((store, Loaded { state, changes }))
    }

    /// Appends a change and makes it durable. On failure the journal is
    /// cut back to what it held before (see the module docs) and the error
    /// returned: the change must be refused.
    pub fn append(&mut self, change: &Change) -> io::Result<()> {
        if self.uncut.is_some() {
            self.cut()?;
        }
        let mut line = serde_json::to_vec(change)?;
        line.push(b'\n');
        let written = self
            .journal
            .write_all(&line)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = written {
            let _ = self.cut();
            return Err(e);
        }
        self.journal_bytes += line.len() as u64;
        Ok(())
    }

    /// Cuts the journal back to its whole lines, durably.
    fn cut(&mut self) -> io::Result<()> {
        let done = self
            .journal
            .set_len(self.journal_bytes)
            .and_then(|()| self.journal.sync_all());
        match done {
            Ok(()) => {
                self.uncut = None;
                Ok(())
            }
            Err(e) => {
                let err = io::Error::new(
                    e.kind(),
                    format!(
                        "the journal could not be cut back after a failed write ({e}); \
                         no change is taken until it can"
                    ),
                );
                self.uncut = Some(e);
                Err(err)
            }
        }
    }

    /// True when the journal has grown enough to fold into the snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.journal_bytes > JOURNAL_MIN.max(self.snapshot_bytes / 2)
    }

    /// Writes `state` as the snapshot, then empties the journal.
    pub fn compact(&mut self, state: &State) -> io::Result<()> {
        save(&self.path, state)?;
        self.snapshot_bytes = fs::metadata(&self.path).map_or(0, |m| m.len());
        self.journal.set_len(0)?;
        self.journal.sync_all()?;
        self.journal_bytes = 0;
        self.uncut = None;
        Ok(())
    }
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

    #[test]
    fn the_journal_replays_and_drops_only_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let (mut st, loaded) = Store::open(&path).unwrap();
        assert!(loaded.state.is_none() && loaded.changes.is_empty());
        let a = StoredRoute::from(&r("10.9.0.0/16", None, 1));
        st.append(&Change::Add(vec![a.clone()])).unwrap();
        st.append(&Change::Bind {
            port: "Port3".into(),
            binding: "none".into(),
        })
        .unwrap();
        drop(st);
        // A crash in the middle of the next line.
        let jpath = Store::journal_path(&path);
        let mut f = OpenOptions::new().append(true).open(&jpath).unwrap();
        f.write_all(b"{\"remove\":[{\"interf").unwrap();
        drop(f);
        let (mut st, loaded) = Store::open(&path).unwrap();
        assert_eq!(loaded.changes.len(), 2, "the torn line is dropped");
        let (mut custom, mut bindings) = (Vec::new(), BTreeMap::new());
        for c in &loaded.changes {
            c.apply(&mut custom, &mut bindings);
            c.apply(&mut custom, &mut bindings);
        }
        assert_eq!(
            custom,
            vec![r("10.9.0.0/16", None, 1)],
            "replaying twice changes nothing"
        );
        assert_eq!(bindings["Port3"], "none");
        // Appending after the cut gives whole lines.
        st.append(&Change::Remove(vec![a])).unwrap();
        st.compact(&State::diff(&[], &[])).unwrap();
        let (_, loaded) = Store::open(&path).unwrap();
        assert!(loaded.changes.is_empty());
        assert_eq!(loaded.state.unwrap().added, vec![]);
        // A bad line in the middle is an error naming it.
        fs::write(&jpath, "nonsense\n{}\n").unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("state.json.journal:1"), "{err}");
    }
}
