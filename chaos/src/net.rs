//! The fault layer for partitions: a TCP proxy in front of every master that can cut links
//! between masters, in one direction or both, and between agents and the masters, while
//! clients keep reaching every master.
//!
//! Each master advertises its proxy's address to its peers (`--peers`) and binds its outgoing
//! peer connections to its own loopback address (`--peer-bind-ip 127.0.0.<10+id>`); each agent
//! reaches the masters through their proxies from its own (`--master-bind-ip
//! 127.0.1.<1+index>`). So a proxy knows which node a connection comes from. A cut link closes
//! the connections already open on it and refuses new ones; connections from any other address
//! (tests, plain clients) always pass; a client that connects from its own address
//! ([`client_ip`], a scheduler of a chaos run) can be cut off like a node. Cuts are directional: `cut(a, b)` stops `a` reaching `b`'s
//! proxy, and with it everything `a` sends to `b` and the answers to it. An agent cut off
//! ([`FaultyNetwork::isolate_agent`]) can reach no master; the masters' own connections to the
//! agent (launches, kills) go direct and are not cut: the partition is one-way, which is what
//! an agent's heartbeats and status updates see.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

use drover_master::raft::MasterId;

/// Why the fault layer could not put a master behind it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("master {0} cannot be put behind the fault layer: master ids 1..={MAX_PROXIED_MASTER} only (each maps to 127.0.0.(10+id))")]
    UnproxiableMaster(MasterId),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Highest master id the fault layer can tell apart (127.0.0.11 … 127.0.0.254).
pub const MAX_PROXIED_MASTER: MasterId = 244;

/// The loopback address master `id` binds its peer connections to (1 ≤ id ≤
/// [`MAX_PROXIED_MASTER`]; [`FaultyNetwork::add`] refuses others).
pub fn peer_ip(id: MasterId) -> IpAddr {
    let last = u8::try_from(10 + id.min(MAX_PROXIED_MASTER)).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Highest agent index the fault layer can tell apart (127.0.1.1 … 127.0.1.254).
pub const MAX_PROXIED_AGENT: usize = 253;

/// The loopback address agent `index` (at most [`MAX_PROXIED_AGENT`]; the cluster refuses to
/// start others behind the fault layer) connects to the masters from.
pub fn agent_ip(index: usize) -> IpAddr {
    let last = u8::try_from(1 + index.min(MAX_PROXIED_AGENT)).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, last))
}

/// Highest client index the fault layer can tell apart (127.0.2.1 … 127.0.2.254).
pub const MAX_PROXIED_CLIENT: usize = 253;

/// The loopback address client `index` (a scheduler of a chaos run) connects to the masters
/// from, so that it can be cut off like a node.
pub fn client_ip(index: usize) -> IpAddr {
    let last = u8::try_from(1 + index.min(MAX_PROXIED_CLIENT)).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, last))
}

/// Who a connection comes from, told by its source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    Master(MasterId),
    Agent(usize),
    Client(usize),
}

fn node_of(ip: IpAddr) -> Option<Node> {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [127, 0, 0, last] if last > 10 => Some(Node::Master((last - 10) as MasterId)),
            [127, 0, 1, last] if last > 0 => Some(Node::Agent((last - 1) as usize)),
            [127, 0, 2, last] if last > 0 => Some(Node::Client((last - 1) as usize)),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

#[derive(Default)]
struct State {
    /// (from, to master) links that are cut.
    cut: HashSet<(Node, MasterId)>,
    /// Open proxied connections by (from, to master).
    open: HashMap<(Node, MasterId), Vec<AbortHandle>>,
}

/// The proxies of one cluster. Dropping it stops them.
pub struct FaultyNetwork {
    state: Arc<Mutex<State>>,
    proxies: JoinSet<()>,
    /// Proxy address by master.
    pub fronts: BTreeMap<MasterId, SocketAddr>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultyNetwork {
    /// An empty fault layer; [`add`](Self::add) puts a proxy in front of each master. Must be
    /// called within a tokio runtime, which runs the proxies.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            proxies: JoinSet::new(),
            fronts: BTreeMap::new(),
        }
    }

    /// Starts a proxy on a free loopback port in front of master `to` at `backend`; returns
    /// the proxy's address, which the master advertises to its peers.
    pub fn add(&mut self, to: MasterId, backend: SocketAddr) -> Result<SocketAddr, NetError> {
        if to == 0 || to > MAX_PROXIED_MASTER {
            return Err(NetError::UnproxiableMaster(to));
        }
        let io = |what: &'static str| move |source| NetError::Io { what, source };
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a proxy"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(io("configuring a proxy"))?;
        let front = std_listener.local_addr().map_err(io("proxy address"))?;
        let listener = TcpListener::from_std(std_listener).map_err(io("registering a proxy"))?;
        self.fronts.insert(to, front);
        self.proxies
            .spawn(serve(listener, to, backend, self.state.clone()));
        Ok(front)
    }

    /// Stops master `from` from reaching master `to` (one direction).
    pub fn cut(&self, from: MasterId, to: MasterId) {
        self.cut_link(Node::Master(from), to);
    }

    /// Lets master `from` reach master `to` again (one direction).
    pub fn mend(&self, from: MasterId, to: MasterId) {
        lock(&self.state).cut.remove(&(Node::Master(from), to));
    }

    fn cut_link(&self, from: Node, to: MasterId) {
        let mut s = lock(&self.state);
        s.cut.insert((from, to));
        for h in s.open.remove(&(from, to)).unwrap_or_default() {
            h.abort();
        }
    }

    /// Cuts agent `index` off from every master (its heartbeats, registrations and status
    /// updates fail; see the module doc).
    pub fn isolate_agent(&self, index: usize) {
        let masters: Vec<MasterId> = self.fronts.keys().copied().collect();
        for m in masters {
            self.cut_link(Node::Agent(index), m);
        }
    }

    /// Cuts client `index` (connecting from [`client_ip`]) off from every master.
    pub fn isolate_client(&self, index: usize) {
        let masters: Vec<MasterId> = self.fronts.keys().copied().collect();
        for m in masters {
            self.cut_link(Node::Client(index), m);
        }
    }

    /// Restores agent `index`'s links.
    pub fn heal_agent(&self, index: usize) {
        lock(&self.state)
            .cut
            .retain(|(from, _)| *from != Node::Agent(index));
    }

    /// Splits the masters into groups that cannot reach each other (both directions).
    pub fn partition(&self, groups: &[&[MasterId]]) {
        for (i, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(i + 1) {
                for &x in a.iter() {
                    for &y in b.iter() {
                        self.cut(x, y);
                        self.cut(y, x);
                    }
                }
            }
        }
    }

    /// Cuts `id` off from every other master.
    pub fn isolate(&self, id: MasterId) {
        let others: Vec<MasterId> = self.fronts.keys().copied().filter(|x| *x != id).collect();
        self.partition(&[&[id], &others]);
    }

    /// Restores every link.
    pub fn heal(&self) {
        lock(&self.state).cut.clear();
    }
}

impl Default for FaultyNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FaultyNetwork {
    fn drop(&mut self) {
        self.proxies.abort_all();
        for (_, handles) in lock(&self.state).open.drain() {
            for h in handles {
                h.abort();
            }
        }
    }
}

async fn serve(listener: TcpListener, to: MasterId, backend: SocketAddr, state: Arc<Mutex<State>>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, peer)) = accepted else { continue };
                let Some(k) = node_of(peer.ip()).map(|f| (f, to)) else {
                    conns.spawn(pump(inbound, backend));
                    continue;
                };
                // Check, start and register under one lock, so a cut made meanwhile either
                // refuses this connection or finds it registered and closes it.
                let mut s = lock(&state);
                if s.cut.contains(&k) {
                    drop(inbound);
                    continue;
                }
                let handle = conns.spawn(pump(inbound, backend));
                let open = s.open.entry(k).or_default();
                open.retain(|h| !h.is_finished());
                open.push(handle);
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn pump(mut inbound: TcpStream, backend: SocketAddr) {
    let Ok(mut outbound) = TcpStream::connect(backend).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}
