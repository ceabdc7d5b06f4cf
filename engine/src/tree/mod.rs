//! The lock-free search tree: an append-only arena of nodes shared by every worker thread.
//!
//! Nodes live in a segmented arena (segment `i` holds `BASE << i` nodes, allocated on first use),
//! are addressed by [`NodeId`] (`u32`) and never move or die while the tree lives, so there is no
//! ABA problem and no memory reclamation, and the module contains no `unsafe` code.
//!
//! # Invariants
//!
//! - **INV-1 (stable ids).** A node, once allocated, stays at the same [`NodeId`] until the tree is
//!   dropped; arena segments are never freed or reallocated while the tree lives.
//! - **INV-2 (write once, then publish).** A node's [`NodeData`] is set exactly once, at allocation;
//!   its [`Eval`] is set exactly once, after scoring and *before* the node is linked into its
//!   parent's child list. Linking is a `Release` CAS and readers walk links with `Acquire`, so a
//!   thread that reaches a node through a link sees its data and evaluation.
//! - **INV-3 (append-only children).** A node's children live in a block of `cap` child slots
//!   (`u32` node ids, contiguous, so a scan issues its loads in parallel), allocated once at the
//!   node's first reservation. Publishing takes the next position with an atomic add and writes the
//!   child's id there once; a written slot never changes and children are never removed.
//! - **INV-4 (reservations).** `published children <= reserved slots <= block cap`. A thread that
//!   wants to add children first reserves slots with a CAS on `reserved` (which also makes sure the
//!   child block exists); each reserved slot is either turned into a published child or given back.
//!   So a publication always finds a free position in the block. In full-expansion mode all `k`
//!   slots are reserved by one CAS from 0, so a node is expanded exactly once.
//! - **INV-5 (in-flight accounting).** `in_flight` counts simulations that have passed through a
//!   node on their way down and have not yet backed up through it. Every increment is matched by
//!   exactly one decrement, from either the backup or the abort of that simulation; when the search
//!   is quiescent every `in_flight` is 0.
//! - **INV-6 (visits).** `visits` of a node counts the completed simulations whose backed-up path
//!   went through it, and `value_sum` is the exact fixed-point sum of the leaf scores they backed
//!   up (integer addition is order-independent, so the sum does not depend on thread timing).
//!   The search root is the one exception during a search: it is never entered, each worker
//!   tallies its simulations and credits them when its phase ends, so no simulation writes the
//!   root's cache line (the most contended one); once the workers are joined INV-6 holds there
//!   too.
//! - **INV-7 (one step per node).** When the policy states its step rule
//!   ([`crate::Policy::step_rule`]), every node's step is exactly one step under it: the search
//!   cuts a step that runs past its first boundary and stores a whole solution as a chain of
//!   nodes, linked as one (`Tree::link_chain`: bottom-up, the head last, so the chain is
//!   published whole). A chain's inner nodes have one-slot child blocks. Tested for every
//!   algorithm in `tests/step_rule.rs`.
//!
//! Statistics (`counts`, `value_sum`, `q`) use `Relaxed` operations: during a search they only
//! steer selection, which tolerates stale values, and after the workers are joined the join gives
//! every thread's updates a happens-before edge to the reader.

mod path;
pub(crate) mod sync;

use std::sync::OnceLock;

pub use path::PathRef;
use sync::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::types::{Problem, Step};

/// Index of a node in its tree's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The root of every tree.
    pub const ROOT: NodeId = NodeId(0);
    /// "No node" (the root's parent). The root is never anybody's child or sibling, so links use
    /// id 0 as their null value and this sentinel only appears in [`NodeData::parent`].
    pub const NONE: NodeId = NodeId(u32::MAX);

    /// The id as an index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Identifies a tree within a run (the position of its problem in the dataset, usually).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeId(pub u32);

/// A stable key for a path: the tree and the node the path ends at. Policies and critics may key
/// per-path state (KV blocks, hidden states, cached scores) by it and drop that state on release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathKey {
    /// The tree.
    pub tree: TreeId,
    /// The last node of the path.
    pub node: NodeId,
}

/// What the critics said about a node, kept so outputs can carry the breakdown.
///
/// # Score range
/// `value`, `prm` and `orm` are normalised to `[0, 1]` from each critic's declared native range;
/// `score` is the leaf score the search backs up (their weighted mean, plus the terminal outcome
/// reward and depth penalty when configured), and `reward` is `score - parent.score` (MCTS-DPO's r).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Eval {
    /// The leaf score used by backups.
    pub score: f32,
    /// Step reward `score - parent.score` (0 at the root).
    pub reward: f32,
    /// Value critic, normalised to `[0, 1]`.
    pub value: Option<f32>,
    /// Process critic for this node's step (not aggregated), normalised to `[0, 1]`.
    pub prm: Option<f32>,
    /// Outcome critic (terminal nodes, or the mean over fast rollouts), normalised to `[0, 1]`.
    pub orm: Option<f32>,
    /// Whether the node's final answer matches the gold answer (terminal nodes with a gold answer).
    pub correct: Option<bool>,
}

/// The write-once payload of a node (INV-2).
#[derive(Debug)]
pub struct NodeData {
    /// Parent node ([`NodeId::NONE`] for the root).
    pub parent: NodeId,
    /// Number of steps from the root.
    pub depth: u32,
    /// The step on the edge from the parent (empty at the root).
    pub step: Step,
    /// The path ends here (answer found, EOS, or the depth limit).
    pub terminal: bool,
    /// The answer extracted at a terminal node.
    pub answer: Option<String>,
}

const FROZEN: u8 = 1;
const TERMINAL: u8 = 2;
const LINKING: u8 = 4;

/// The hot half of an arena slot: the atomics selection and backup touch, packed into one cache
/// line so scanning a node's children costs one line per child.
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Node {
    /// `visits` in the low 32 bits, `in_flight` in the high 32 bits (INV-5, INV-6): one atomic
    /// add both counts the visit and returns the in-flight slot at backup time.
    counts: AtomicU64,
    /// Fixed-point sum of backed-up leaf scores (INV-6), `FIXED_SCALE` units.
    value_sum: AtomicI64,
    /// MCTS-DPO's Q as `f64` bits (only maintained by the `q_r_plus_v` backup).
    q: AtomicU64,
    /// The child block (INV-3): start index in the slot arena in the low 32 bits (0 = no block
    /// yet), its number of slots in the high 32 bits; one word so one CAS publishes both.
    block: AtomicU64,
    /// Published children (positions taken in the block).
    n_children: AtomicU32,
    /// Reserved child slots (INV-4).
    reserved: AtomicU32,
    /// Current allowance of children (progressive widening; grow-only).
    width: AtomicU32,
    /// Copy of `NodeData::depth`, so descent never touches the cold half.
    depth: AtomicU32,
    /// `FROZEN`: widening stopped (the policy kept repeating itself); `TERMINAL`: copy of
    /// `NodeData::terminal`.
    flags: AtomicU8,
}

impl Node {
    fn new() -> Self {
        Node {
            counts: AtomicU64::new(0),
            value_sum: AtomicI64::new(0),
            q: AtomicU64::new(0),
            block: AtomicU64::new(0),
            n_children: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            width: AtomicU32::new(0),
            depth: AtomicU32::new(0),
            flags: AtomicU8::new(0),
        }
    }
}

/// The cold half of an arena slot: write-once payloads (INV-2), read when building paths and
/// outputs, rarely during selection.
#[derive(Debug, Default)]
pub(crate) struct Cold {
    data: OnceLock<NodeData>,
    eval: OnceLock<Eval>,
}

/// One arena segment: hot and cold halves side by side.
#[derive(Debug)]
struct Segment {
    hot: Box<[Node]>,
    cold: Box<[Cold]>,
}

impl Segment {
    fn new(len: usize) -> Self {
        Segment {
            hot: (0..len).map(|_| Node::new()).collect(),
            cold: (0..len).map(|_| Cold::default()).collect(),
        }
    }
}

/// Units per 1.0 of score in `value_sum`: 2^24 keeps f32 precision and leaves room for 2^32 visits
/// of scores up to |8| without overflowing an i64.
pub(crate) const FIXED_SCALE: f64 = (1u64 << 24) as f64;

/// A score in `value_sum` units.
#[inline]
pub(crate) fn fixed(score: f64) -> i64 {
    (score * FIXED_SCALE).round() as i64
}

const IN_FLIGHT_ONE: u64 = 1 << 32;
const VISIT_MASK: u64 = (1 << 32) - 1;

#[cfg(not(loom))]
const BASE_SHIFT: u32 = 6;
#[cfg(loom)]
const BASE_SHIFT: u32 = 1;
const BASE: u64 = 1 << BASE_SHIFT;
const SEGMENTS: usize = 33 - BASE_SHIFT as usize;

/// Child-slot arena segments: segment `i` holds `SLOT_BASE << i` slots. `SLOT_BASE` is at least
/// the largest block (1024 children, the config's limit), so a block always fits in one segment.
#[cfg(not(loom))]
const SLOT_SHIFT: u32 = 10;
#[cfg(loom)]
const SLOT_SHIFT: u32 = 3;
const SLOT_BASE: u64 = 1 << SLOT_SHIFT;
const SLOT_SEGMENTS: usize = 33 - SLOT_SHIFT as usize;

/// A search tree over one problem. Shared by reference (or `Arc`) among worker threads.
#[derive(Debug)]
pub struct Tree {
    id: TreeId,
    problem: Problem,
    prompt: String,
    seed: u64,
    segments: Box<[OnceLock<Segment>]>,
    len: AtomicU32,
    /// Child-slot arena (INV-3): `u32` node ids, 0 = not yet written.
    slots: Box<[OnceLock<Box<[AtomicU32]>>]>,
    /// Next free child slot (slot 0 is never handed out: 0 means "no block").
    slots_len: AtomicU32,
    capacity: u32,
    /// The current search root (moved by MCTS-DPO's move-by-move mode).
    root: AtomicU32,
}

/// A node's statistics, read at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeStats {
    /// Completed simulations through the node.
    pub visits: u32,
    /// Simulations currently in flight through the node.
    pub in_flight: u32,
    /// Sum of backed-up leaf scores.
    pub value_sum: f64,
    /// MCTS-DPO's Q (meaningful under the `q_r_plus_v` backup).
    pub q: f64,
    /// Published children.
    pub children: u32,
}

impl NodeStats {
    /// Mean backed-up score `value_sum / visits` (0 when unvisited).
    pub fn mean(&self) -> f64 {
        if self.visits == 0 {
            0.0
        } else {
            self.value_sum / f64::from(self.visits)
        }
    }
}

impl Tree {
    /// A tree holding only its root (whose evaluation is still unset).
    ///
    /// `capacity` bounds the number of nodes (at most `u32::MAX - 1`).
    pub fn new(id: TreeId, problem: Problem, prompt: String, seed: u64, capacity: u32) -> Self {
        let segments = (0..SEGMENTS).map(|_| OnceLock::new()).collect();
        let slots = (0..SLOT_SEGMENTS).map(|_| OnceLock::new()).collect();
        let tree = Tree {
            id,
            problem,
            prompt,
            seed,
            segments,
            len: AtomicU32::new(0),
            slots,
            slots_len: AtomicU32::new(1),
            capacity: capacity.clamp(1, u32::MAX - 1),
            root: AtomicU32::new(0),
        };
        // Under loom, allocate every segment up front: std's OnceLock is invisible to the model
        // checker, so two model threads must never race to initialise one.
        #[cfg(loom)]
        for (seg, slot) in tree.segments.iter().enumerate() {
            if (BASE << seg) - BASE < u64::from(tree.capacity) {
                let _ = slot.get_or_init(|| Segment::new((BASE << seg) as usize));
            }
        }
        #[cfg(loom)]
        for seg in 0..2 {
            let _ = tree.slots[seg].get_or_init(|| new_slot_segment(seg));
        }
        let root = tree
            .alloc(NodeData {
                parent: NodeId::NONE,
                depth: 0,
                step: Step::default(),
                terminal: false,
                answer: None,
            })
            .expect("INV-1: a fresh tree has room for its root");
        debug_assert_eq!(root, NodeId::ROOT);
        tree
    }

    /// A tree holding one path, `steps` in order below the root, each node evaluated with a
    /// zero score; returns it with the path's node ids (root first). This is how a path stored
    /// as text (critic training or evaluation data) is shown to a [`crate::Critic`], which reads
    /// paths through a tree. The last node is terminal when `terminal` is set.
    ///
    /// # Errors
    /// [`Error::TreeFull`] if the path is longer than the tree's capacity.
    pub fn chain(
        id: TreeId,
        problem: Problem,
        prompt: String,
        steps: Vec<Step>,
        terminal: bool,
    ) -> Result<(Tree, Vec<NodeId>)> {
        let n = steps.len();
        let cap = u32::try_from(n + 1).unwrap_or(u32::MAX).max(2);
        let tree = Tree::new(id, problem, prompt, 0, cap);
        let mut ids = vec![NodeId::ROOT];
        for (i, step) in steps.into_iter().enumerate() {
            let parent = *ids.last().expect("the root is in");
            let last = i + 1 == n;
            if tree.reserve(parent, 1, 1, 1, true)?.is_none() {
                return Err(Error::TreeFull { capacity: cap });
            }
            let child = tree.alloc(NodeData {
                parent,
                depth: i as u32 + 1,
                step,
                terminal: last && terminal,
                answer: None,
            })?;
            tree.link_new(parent, child, Eval::default(), 0.0, false);
            ids.push(child);
        }
        Ok((tree, ids))
    }

    /// The tree's id.
    pub fn id(&self) -> TreeId {
        self.id
    }

    /// The problem searched.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The formatted prompt (the task's rendering of the problem).
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The tree's seed (every random choice in the search derives from it).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current search root (the root unless move-by-move search re-rooted the tree).
    pub fn search_root(&self) -> NodeId {
        // Relaxed: the root only moves between move-by-move phases, which are separated by
        // thread joins.
        NodeId(self.root.load(Ordering::Relaxed))
    }

    pub(crate) fn set_search_root(&self, node: NodeId) {
        // Relaxed: see `search_root`.
        self.root.store(node.0, Ordering::Relaxed);
    }

    /// Number of arena slots handed out (an upper bound on [`Tree::node_ids`]'s count: dropped
    /// children keep their slot).
    pub fn len(&self) -> usize {
        // Relaxed: a count, read for reporting.
        (self.len.load(Ordering::Relaxed).min(self.capacity)) as usize
    }

    /// Whether the tree holds only its root.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    #[inline]
    fn locate(id: NodeId) -> (usize, usize) {
        let v = u64::from(id.0) + BASE;
        let seg = (63 - v.leading_zeros()) - BASE_SHIFT;
        let off = v - (BASE << seg);
        (seg as usize, off as usize)
    }

    #[inline]
    fn segment(&self, id: NodeId) -> (&Segment, usize) {
        let (seg, off) = Self::locate(id);
        let s = self.segments[seg]
            .get()
            .expect("INV-1: ids handed out point into allocated segments");
        (s, off)
    }

    #[inline]
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        let (s, off) = self.segment(id);
        &s.hot[off]
    }

    #[inline]
    fn cold(&self, id: NodeId) -> &Cold {
        let (s, off) = self.segment(id);
        &s.cold[off]
    }

    /// Allocates one node and writes its data (INV-2). The node is not yet linked anywhere.
    pub(crate) fn alloc(&self, data: NodeData) -> Result<NodeId> {
        Ok(self.alloc_many(vec![data])?[0])
    }

    /// Allocates consecutive nodes (siblings stay together in memory) and writes their data
    /// (INV-2). All or nothing: when the tree is full no slot is written.
    pub(crate) fn alloc_many(&self, datas: Vec<NodeData>) -> Result<Vec<NodeId>> {
        let k = u32::try_from(datas.len()).expect("fewer than 2^32 siblings");
        // Relaxed: the range only has to be unique; the nodes' contents are published by their
        // OnceLocks (data) and later by the Release link (INV-2).
        let first = self.len.fetch_add(k, Ordering::Relaxed);
        if u64::from(first) + u64::from(k) > u64::from(self.capacity) {
            return Err(Error::TreeFull {
                capacity: self.capacity,
            });
        }
        let mut ids = Vec::with_capacity(datas.len());
        for (i, data) in datas.into_iter().enumerate() {
            let id = NodeId(first + i as u32);
            let (seg, off) = Self::locate(id);
            let segment = self.segments[seg].get_or_init(|| Segment::new((BASE << seg) as usize));
            let hot = &segment.hot[off];
            // Relaxed: published with the node by the Release link (INV-2).
            hot.depth.store(data.depth, Ordering::Relaxed);
            if data.terminal {
                hot.flags.fetch_or(TERMINAL, Ordering::Relaxed);
            }
            if segment.cold[off].data.set(data).is_err() {
                unreachable!("INV-2: slot {} handed out twice", id.0);
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// The node's write-once data.
    #[inline]
    pub fn data(&self, id: NodeId) -> &NodeData {
        self.cold(id)
            .data
            .get()
            .expect("INV-2: a reachable node has its data")
    }

    /// The node's evaluation, once scored.
    #[inline]
    pub fn eval(&self, id: NodeId) -> Option<&Eval> {
        self.cold(id).eval.get()
    }

    /// Sets the node's evaluation and its initial Q (`q0`; MCTS-DPO: `V(parent) + r`).
    pub(crate) fn set_eval(&self, id: NodeId, eval: Eval, q0: f64) {
        // Relaxed: published together with the eval by the child link's Release (INV-2).
        self.node(id).q.store(q0.to_bits(), Ordering::Relaxed);
        if self.cold(id).eval.set(eval).is_err() {
            unreachable!("INV-2: node {} evaluated twice", id.0);
        }
    }

    #[inline]
    fn locate_slot(idx: u32) -> (usize, usize) {
        let v = u64::from(idx) + SLOT_BASE;
        let seg = (63 - v.leading_zeros()) - SLOT_SHIFT;
        (seg as usize, (v - (SLOT_BASE << seg)) as usize)
    }

    #[inline]
    fn slot(&self, idx: u32) -> &AtomicU32 {
        let (seg, off) = Self::locate_slot(idx);
        &self.slots[seg]
            .get()
            .expect("INV-3: blocks point into allocated slot segments")[off]
    }

    /// Allocates `cap` contiguous child slots inside one segment.
    fn alloc_block(&self, cap: u32) -> Result<u32> {
        debug_assert!(u64::from(cap) <= SLOT_BASE, "INV-3: blocks fit a segment");
        // Relaxed: the counter only hands out disjoint ranges; the block is published by the
        // Release CAS on the node's `block` field.
        let mut cur = self.slots_len.load(Ordering::Relaxed);
        loop {
            let (seg, off) = Self::locate_slot(cur);
            let seg_len = (SLOT_BASE << seg) as usize;
            // Skip to the next segment when the block would straddle two.
            let start = if off + cap as usize > seg_len {
                u64::from(cur) + (seg_len - off) as u64
            } else {
                u64::from(cur)
            };
            let end = start + u64::from(cap);
            if end >= u64::from(u32::MAX) {
                return Err(Error::TreeFull {
                    capacity: self.capacity,
                });
            }
            match self.slots_len.compare_exchange_weak(
                cur,
                end as u32,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let (seg, _) = Self::locate_slot(start as u32);
                    self.slots[seg].get_or_init(|| new_slot_segment(seg));
                    return Ok(start as u32);
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Makes sure `id` has a child block (of `cap` slots if this call creates it) and returns
    /// `(start, cap)`. Two racing creators both allocate; the CAS loser's block stays unused.
    fn ensure_block(&self, id: NodeId, cap: u32) -> Result<(u32, u32)> {
        let n = self.node(id);
        // Acquire: pairs with the Release CAS below (the block's zeroed slots are visible).
        let cur = n.block.load(Ordering::Acquire);
        if cur != 0 {
            return Ok(unpack_block(cur));
        }
        let start = self.alloc_block(cap)?;
        let packed = u64::from(start) | (u64::from(cap) << 32);
        // Release publishes the block; Acquire on failure reads the winner's block.
        match n
            .block
            .compare_exchange(0, packed, Ordering::Release, Ordering::Acquire)
        {
            Ok(_) => Ok((start, cap)),
            Err(winner) => Ok(unpack_block(winner)),
        }
    }

    /// Publishes an evaluated child in its parent's block (INV-2, INV-3). The caller holds a
    /// reservation (INV-4), so a free position exists.
    pub(crate) fn link(&self, parent: NodeId, child: NodeId) {
        debug_assert!(
            self.cold(child).eval.get().is_some(),
            "INV-2: link after eval"
        );
        let p = self.node(parent);
        // Acquire: see the block set by `ensure_block` (Release).
        let (block, cap) = unpack_block(p.block.load(Ordering::Acquire));
        assert!(
            block != 0,
            "INV-4: link without a reservation at node {}",
            parent.0
        );
        // Relaxed: the position only has to be unique; the slot store below publishes.
        let pos = p.n_children.fetch_add(1, Ordering::Relaxed);
        assert!(
            pos < cap,
            "INV-4: more children than block slots at node {}",
            parent.0
        );
        // Release: publishes the child's data and eval to readers that Acquire the slot (INV-2).
        self.slot(block + pos).store(child.0, Ordering::Release);
    }

    /// Sets the child's evaluation and links it (INV-2), unless `dedup` is on and a published
    /// sibling has the same step text; returns whether it was linked. With `dedup`, the check and
    /// the link run under the parent's short `LINKING` flag (no model call inside), so two
    /// threads that generated the same step at once cannot both link it. A rejected child keeps
    /// no evaluation and stays unreachable (it is not listed by [`Tree::node_ids`]).
    pub(crate) fn link_new(
        &self,
        parent: NodeId,
        child: NodeId,
        eval: Eval,
        q0: f64,
        dedup: bool,
    ) -> bool {
        if !dedup {
            self.set_eval(child, eval, q0);
            self.link(parent, child);
            return true;
        }
        let _guard = LinkGuard::acquire(&self.node(parent).flags);
        let text = &self.data(child).step.text;
        let dup = self
            .children(parent)
            .any(|c| &self.data(c).step.text == text);
        if !dup {
            self.set_eval(child, eval, q0);
            self.link(parent, child);
        }
        !dup
    }

    /// Links a chain of new nodes below `parent` as one: `chain[0]` becomes a child of `parent`
    /// and each later node a child of the one before (each already holds a reservation on its
    /// parent, INV-4). Evals are set and links made from the bottom up, so the chain is published
    /// whole by the head's link (INV-2 for every node: data, then eval, then link). With
    /// `dedup`, the head is checked against its published siblings under the parent's
    /// `LINKING` flag as in [`Tree::link_new`]; a rejected chain keeps no evaluation and stays
    /// unreachable. Returns whether it was linked.
    pub(crate) fn link_chain(
        &self,
        parent: NodeId,
        chain: &[(NodeId, Eval, f64)],
        dedup: bool,
    ) -> bool {
        let Some(&(head, head_eval, head_q)) = chain.first() else {
            return false;
        };
        let _guard = dedup.then(|| LinkGuard::acquire(&self.node(parent).flags));
        if dedup {
            let text = &self.data(head).step.text;
            if self
                .children(parent)
                .any(|c| &self.data(c).step.text == text)
            {
                return false;
            }
        }
        for w in chain.windows(2).rev() {
            let (above, (child, eval, q0)) = (w[0].0, w[1]);
            self.set_eval(child, eval, q0);
            // Nobody can reach `above` yet: this link is published by the head's below.
            self.link(above, child);
        }
        self.set_eval(head, head_eval, head_q);
        self.link(parent, head);
        true
    }

    /// Iterates over the published children of `id`, oldest first (creation order under one
    /// thread).
    #[inline]
    pub fn children(&self, id: NodeId) -> Children<'_> {
        let n = self.node(id);
        // Acquire: pairs with the Release CAS in `ensure_block`.
        let (block, _) = unpack_block(n.block.load(Ordering::Acquire));
        // Relaxed: a position below this count whose slot is still 0 is skipped by the iterator.
        let len = if block == 0 {
            0
        } else {
            n.n_children.load(Ordering::Relaxed)
        };
        Children {
            tree: self,
            block,
            pos: 0,
            len,
        }
    }

    /// Published children of `id`, in creation order (the order a one-thread search made them).
    pub fn children_in_order(&self, id: NodeId) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.children(id).collect();
        v.sort_unstable();
        v
    }

    /// Number of published children (positions taken; a child whose slot write is still in
    /// flight is counted).
    #[inline]
    pub fn child_count(&self, id: NodeId) -> u32 {
        // Relaxed: a count for heuristics and reports.
        self.node(id).n_children.load(Ordering::Relaxed)
    }

    /// A snapshot of the node's statistics.
    pub fn stats(&self, id: NodeId) -> NodeStats {
        let n = self.node(id);
        // Relaxed: statistics (see the module docs).
        let counts = n.counts.load(Ordering::Relaxed);
        NodeStats {
            visits: (counts & VISIT_MASK) as u32,
            in_flight: (counts >> 32) as u32,
            value_sum: n.value_sum.load(Ordering::Relaxed) as f64 / FIXED_SCALE,
            q: f64::from_bits(n.q.load(Ordering::Relaxed)),
            children: self.child_count(id),
        }
    }

    /// Visits and in-flight count, read in one load.
    #[inline]
    pub(crate) fn counts(&self, id: NodeId) -> (u32, u32) {
        // Relaxed: statistics.
        let c = self.node(id).counts.load(Ordering::Relaxed);
        ((c & VISIT_MASK) as u32, (c >> 32) as u32)
    }

    #[inline]
    pub(crate) fn value_sum(&self, id: NodeId) -> f64 {
        // Relaxed: statistics.
        self.node(id).value_sum.load(Ordering::Relaxed) as f64 / FIXED_SCALE
    }

    #[inline]
    pub(crate) fn q(&self, id: NodeId) -> f64 {
        // Relaxed: statistics.
        f64::from_bits(self.node(id).q.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn set_q(&self, id: NodeId, q: f64) {
        // Relaxed: statistics; exact values are recomputed by `settle_q` once quiescent.
        self.node(id).q.store(q.to_bits(), Ordering::Relaxed);
    }

    /// Credits `visits` completed simulations and their fixed-point value sum to the search root,
    /// whose counts workers tally locally instead of updating them per simulation (INV-6).
    pub(crate) fn credit(&self, id: NodeId, visits: u32, value_fixed: i64) {
        let n = self.node(id);
        // Relaxed: statistics, read after the workers are joined.
        n.counts.fetch_add(u64::from(visits), Ordering::Relaxed);
        n.value_sum.fetch_add(value_fixed, Ordering::Relaxed);
    }

    /// A simulation passes down through `id` (INV-5).
    #[inline]
    pub(crate) fn enter(&self, id: NodeId) {
        // Relaxed: statistics.
        self.node(id)
            .counts
            .fetch_add(IN_FLIGHT_ONE, Ordering::Relaxed);
    }

    /// A simulation that entered `id` gives up without backing up (INV-5).
    #[inline]
    pub(crate) fn abort(&self, id: NodeId) {
        // Relaxed: statistics.
        let before = self
            .node(id)
            .counts
            .fetch_sub(IN_FLIGHT_ONE, Ordering::Relaxed);
        debug_assert!(
            before >> 32 > 0,
            "INV-5: abort without enter at node {}",
            id.0
        );
    }

    /// A simulation that entered `id` backs up `score` through it (INV-5, INV-6).
    #[inline]
    pub(crate) fn backup(&self, id: NodeId, score: f64) {
        let n = self.node(id);
        // One add: visits + 1 and in_flight - 1 (the low half cannot carry: visits < 2^32 - 1).
        // Relaxed: statistics.
        let before = n
            .counts
            .fetch_add(1u64.wrapping_sub(IN_FLIGHT_ONE), Ordering::Relaxed);
        debug_assert!(
            before >> 32 > 0,
            "INV-5: backup without enter at node {}",
            id.0
        );
        n.value_sum.fetch_add(fixed(score), Ordering::Relaxed);
    }

    /// Tries to reserve `k` child slots so that `reserved + k <= min(limit, block cap)` (INV-4),
    /// creating the node's child block of `block_size` slots on first use. With `only_if_empty`,
    /// succeeds only from zero reservations (full expansion: exactly once). Returns the first
    /// reserved index.
    pub(crate) fn reserve(
        &self,
        id: NodeId,
        k: u32,
        limit: u32,
        block_size: u32,
        only_if_empty: bool,
    ) -> Result<Option<u32>> {
        let cap = limit.min(self.ensure_block(id, block_size.max(k))?.1);
        let r = &self.node(id).reserved;
        // Relaxed: the reservation counter only arbitrates; the children it leads to are
        // published by `link` (Release).
        let mut cur = r.load(Ordering::Relaxed);
        loop {
            if (only_if_empty && cur != 0) || cur + k > cap {
                return Ok(None);
            }
            // Relaxed: nothing is published through `reserved`.
            match r.compare_exchange_weak(cur, cur + k, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(Some(cur)),
                Err(now) => cur = now,
            }
        }
    }

    /// Gives back `k` reserved slots that did not become children (INV-4).
    pub(crate) fn unreserve(&self, id: NodeId, k: u32) {
        if k > 0 {
            // Relaxed: see `reserve`.
            let before = self.node(id).reserved.fetch_sub(k, Ordering::Relaxed);
            debug_assert!(before >= k, "INV-4: unreserve more than reserved");
        }
    }

    /// Slots in the node's child block (0 before its first reservation).
    pub fn block_cap(&self, id: NodeId) -> u32 {
        // Acquire: pairs with the Release CAS in `ensure_block`.
        unpack_block(self.node(id).block.load(Ordering::Acquire)).1
    }

    /// Reserved child slots: published children plus expansions in progress (INV-4).
    pub fn reserved(&self, id: NodeId) -> u32 {
        // Relaxed: see `reserve`.
        self.node(id).reserved.load(Ordering::Relaxed)
    }

    /// Raises the node's width allowance to at least `w` (widths only grow) and returns it.
    pub(crate) fn grow_width(&self, id: NodeId, w: u32) -> u32 {
        // Relaxed: the width is a heuristic allowance; a stale read lets at most one extra
        // expansion through, which INV-4 still bounds by the cap.
        let width = &self.node(id).width;
        let now = width.load(Ordering::Relaxed);
        if now >= w {
            // Read-only on the hot path: no write to a shared cache line unless the width grows.
            return now;
        }
        width.fetch_max(w, Ordering::Relaxed).max(w)
    }

    /// Stops widening `id` (its policy kept proposing duplicates).
    pub(crate) fn freeze(&self, id: NodeId) {
        // Relaxed: a heuristic flag, like the width.
        self.node(id).flags.fetch_or(FROZEN, Ordering::Relaxed);
    }

    /// Whether the node is terminal (same as `data(id).terminal`, read from the hot half).
    #[inline]
    pub fn is_terminal(&self, id: NodeId) -> bool {
        // Relaxed: written before the node was published (INV-2).
        self.node(id).flags.load(Ordering::Relaxed) & TERMINAL != 0
    }

    /// The node's depth (same as `data(id).depth`, read from the hot half).
    #[inline]
    pub fn depth(&self, id: NodeId) -> u32 {
        // Relaxed: written before the node was published (INV-2).
        self.node(id).depth.load(Ordering::Relaxed)
    }

    /// Whether widening was stopped.
    pub fn is_frozen(&self, id: NodeId) -> bool {
        // Relaxed: see `freeze`.
        self.node(id).flags.load(Ordering::Relaxed) & FROZEN != 0
    }

    /// The path from the root to `id`, root first.
    pub fn path_to(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = Vec::with_capacity(self.data(id).depth as usize + 1);
        let mut cur = id;
        while cur != NodeId::NONE {
            path.push(cur);
            cur = self.data(cur).parent;
        }
        path.reverse();
        path
    }

    /// The concatenated step text from the root to `id`.
    pub fn path_text(&self, id: NodeId) -> String {
        self.path_to(id)
            .into_iter()
            .map(|n| self.data(n).step.text.as_str())
            .collect()
    }

    /// Every node of the tree: allocated and evaluated (call when quiescent). Children a
    /// search dropped after allocating them (duplicates, a full tree) are not listed.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.len() as u32).map(NodeId).filter(|&id| {
            let c = self.cold(id);
            c.data.get().is_some() && c.eval.get().is_some()
        })
    }

    /// Bytes used by one arena slot (hot and cold halves), excluding heap data owned by its step
    /// (text, tokens) and answer.
    pub fn bytes_per_node() -> usize {
        std::mem::size_of::<Node>() + std::mem::size_of::<Cold>()
    }

    /// Approximate heap bytes: the arena slots allocated so far plus each node's step text, tokens
    /// and answer.
    pub fn approx_bytes(&self) -> usize {
        let slots: usize = self
            .segments
            .iter()
            .filter_map(|s| s.get())
            .map(|s| s.hot.len() * Self::bytes_per_node())
            .sum();
        let heap: usize = self
            .node_ids()
            .map(|id| {
                let d = self.data(id);
                d.step.text.capacity()
                    + d.step.tokens.as_ref().map_or(0, |t| t.capacity() * 4)
                    + d.answer.as_ref().map_or(0, |a| a.capacity())
            })
            .sum();
        slots + heap
    }
}

/// Holds a node's `LINKING` flag; released on drop, so even a panic inside cannot leave it set.
struct LinkGuard<'a> {
    flags: &'a AtomicU8,
}

impl<'a> LinkGuard<'a> {
    fn acquire(flags: &'a AtomicU8) -> Self {
        // Acquire: the previous holder's links (Release in `drop`) are visible to our check.
        while flags.fetch_or(LINKING, Ordering::Acquire) & LINKING != 0 {
            sync::spin_wait();
        }
        LinkGuard { flags }
    }
}

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        // Release: our link happens-before the next holder's check.
        self.flags.fetch_and(!LINKING, Ordering::Release);
    }
}

#[inline]
fn unpack_block(b: u64) -> (u32, u32) {
    (b as u32, (b >> 32) as u32)
}

fn new_slot_segment(seg: usize) -> Box<[AtomicU32]> {
    (0..(SLOT_BASE << seg)).map(|_| AtomicU32::new(0)).collect()
}

/// Iterator over a node's published children (see [`Tree::children`]).
#[derive(Debug)]
pub struct Children<'a> {
    tree: &'a Tree,
    block: u32,
    pos: u32,
    len: u32,
}

impl Iterator for Children<'_> {
    type Item = NodeId;

    #[inline]
    fn next(&mut self) -> Option<NodeId> {
        while self.pos < self.len {
            let i = self.pos;
            self.pos += 1;
            // Acquire: pairs with the Release store in `link` (INV-2); 0 = being written.
            let id = self.tree.slot(self.block + i).load(Ordering::Acquire);
            if id != 0 {
                return Some(NodeId(id));
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn tree() -> Tree {
        Tree::new(TreeId(0), Problem::new("p", "q"), "q".into(), 1, 1 << 20)
    }

    #[test]
    fn chain_builds_one_linked_path() {
        let steps = vec![Step::text("a"), Step::text("b"), Step::text("c")];
        let (t, ids) =
            Tree::chain(TreeId(4), Problem::new("p", "q"), "q".into(), steps, true).unwrap();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[0], NodeId::ROOT);
        assert_eq!(t.path_to(ids[3]), ids);
        assert_eq!(t.path_text(ids[3]), "abc");
        assert!(t.is_terminal(ids[3]) && !t.is_terminal(ids[2]));
        assert_eq!(t.depth(ids[3]), 3);
        let (t, ids) =
            Tree::chain(TreeId(5), Problem::new("p", "q"), "q".into(), vec![], false).unwrap();
        assert_eq!((ids.len(), t.len()), (1, 1));
    }

    fn child(t: &Tree, parent: NodeId, text: &str) -> NodeId {
        let id = t
            .alloc(NodeData {
                parent,
                depth: t.data(parent).depth + 1,
                step: Step::text(text),
                terminal: false,
                answer: None,
            })
            .unwrap();
        t.set_eval(id, Eval::default(), 0.0);
        t.reserve(parent, 1, 8, 8, false).unwrap().unwrap();
        t.link(parent, id);
        id
    }

    #[test]
    fn segments_map_ids_without_gaps() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let (s, o) = Tree::locate(NodeId(i));
            assert!(o < (BASE << s) as usize);
            assert!(seen.insert((s, o)));
        }
        assert_eq!(Tree::locate(NodeId(0)), (0, 0));
        assert_eq!(Tree::locate(NodeId(BASE as u32)), (1, 0));
        let (s, _) = Tree::locate(NodeId(u32::MAX - 1));
        assert!(s < SEGMENTS);
        let (s, _) = Tree::locate_slot(u32::MAX - 1);
        assert!(s < SLOT_SEGMENTS);
    }

    #[test]
    fn child_blocks_never_straddle_segments() {
        let t = tree();
        let mut starts = Vec::new();
        for cap in [1000u32, 30, 600, 1024, 7] {
            let start = t.alloc_block(cap).unwrap();
            let (s0, _) = Tree::locate_slot(start);
            let (s1, _) = Tree::locate_slot(start + cap - 1);
            assert_eq!(s0, s1, "block of {cap} at {start} straddles");
            starts.push((start, cap));
        }
        for w in starts.windows(2) {
            assert!(w[1].0 >= w[0].0 + w[0].1, "blocks overlap: {w:?}");
        }
    }

    #[test]
    fn children_are_appended_and_iterated() {
        let t = tree();
        let a = child(&t, NodeId::ROOT, "a");
        let b = child(&t, NodeId::ROOT, "b");
        let c = child(&t, a, "c");
        assert_eq!(t.children_in_order(NodeId::ROOT), vec![a, b]);
        assert_eq!(t.children(NodeId::ROOT).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(t.child_count(NodeId::ROOT), 2);
        assert_eq!(t.path_to(c), vec![NodeId::ROOT, a, c]);
        assert_eq!(t.path_text(c), "ac");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn counts_pack_visits_and_in_flight() {
        let t = tree();
        t.enter(NodeId::ROOT);
        t.enter(NodeId::ROOT);
        assert_eq!(t.counts(NodeId::ROOT), (0, 2));
        t.backup(NodeId::ROOT, 0.25);
        t.abort(NodeId::ROOT);
        assert_eq!(t.counts(NodeId::ROOT), (1, 0));
        assert!((t.stats(NodeId::ROOT).mean() - 0.25).abs() < 1e-6);
    }

    #[test]
    fn reservations_respect_cap_and_full_mode() {
        let t = tree();
        let r = |k, limit, only| t.reserve(NodeId::ROOT, k, limit, 4, only).unwrap();
        assert_eq!(r(1, 2, false), Some(0));
        assert_eq!(r(1, 2, false), Some(1));
        assert_eq!(r(1, 2, false), None);
        t.unreserve(NodeId::ROOT, 2);
        assert_eq!(r(3, 3, true), Some(0));
        assert_eq!(r(3, 6, true), None);
        // The block holds 4: a limit above it is capped.
        t.unreserve(NodeId::ROOT, 3);
        assert_eq!(r(5, 9, false), None);
        assert_eq!(t.block_cap(NodeId::ROOT), 4);
    }

    #[test]
    fn hot_half_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Node>(), 64);
        assert_eq!(std::mem::align_of::<Node>(), 64);
        assert_eq!(Tree::bytes_per_node(), 64 + std::mem::size_of::<Cold>());
        // A tree of 1000 nodes with empty steps stays within its slots plus segment rounding.
        let t = tree();
        for _ in 0..999 {
            t.alloc(NodeData {
                parent: NodeId::ROOT,
                depth: 1,
                step: Step::default(),
                terminal: false,
                answer: None,
            })
            .unwrap();
        }
        assert!(t.approx_bytes() <= 2 * 1024 * Tree::bytes_per_node());
    }

    #[test]
    fn capacity_is_an_error_not_a_panic() {
        let t = Tree::new(TreeId(0), Problem::new("p", "q"), "q".into(), 1, 2);
        let d = || NodeData {
            parent: NodeId::ROOT,
            depth: 1,
            step: Step::default(),
            terminal: false,
            answer: None,
        };
        assert!(t.alloc(d()).is_ok());
        assert!(matches!(t.alloc(d()), Err(Error::TreeFull { capacity: 2 })));
    }
}

/// Model checks of the publication and accounting protocols. Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p ponder-engine --lib loom_models`.
#[cfg(all(test, loom))]
mod loom_models;
