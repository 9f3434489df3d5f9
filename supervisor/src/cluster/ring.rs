//! A consistent-hash ring with virtual nodes: which live node owns a job.
//!
//! The hash is FNV-1a 64, written out here so that every build of traitor, on every
//! machine, places a job on the same node (std's hasher makes no such promise). Each node
//! gets [`VNODES`] points, so adding or removing a node moves about 1/N of the jobs.
//! Pure data: no I/O, no clocks.

/// Points per node on the ring.
pub const VNODES: usize = 128;

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short, similar keys; finish with a 64-bit mixer.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring {
    /// Sorted by point.
    points: Vec<(u64, u32)>,
    nodes: Vec<String>,
}

impl Ring {
    /// A ring over `nodes` (order does not matter; duplicates are ignored).
    pub fn new(nodes: &[String]) -> Ring {
        let mut nodes: Vec<String> = nodes.to_vec();
        nodes.sort();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * VNODES);
        for (i, n) in nodes.iter().enumerate() {
            for v in 0..VNODES {
                points.push((fnv1a(format!("{n}#{v}").as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        Ring { points, nodes }
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node that owns `key`, or `None` on an empty ring.
    pub fn owner(&self, key: &str) -> Option<&str> {
        if self.points.is_empty() {
            return None;
        }
        let h = fnv1a(key.as_bytes());
        let i = self.points.partition_point(|(p, _)| *p < h);
        let (_, node) = self.points[i % self.points.len()];
        self.nodes.get(node as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn an_empty_ring_owns_nothing() {
        assert_eq!(Ring::new(&[]).owner("job"), None);
    }

    #[test]
    fn the_same_nodes_in_any_order_make_the_same_ring() {
        let mut a = names(3);
        let r1 = Ring::new(&a);
        a.reverse();
        let r2 = Ring::new(&a);
        for j in 0..1000 {
            let k = format!("job-{j}");
            assert_eq!(r1.owner(&k), r2.owner(&k));
        }
    }

    #[test]
    fn load_is_spread_roughly_evenly() {
        let r = Ring::new(&names(3));
        let mut counts = std::collections::HashMap::new();
        for j in 0..30_000 {
            *counts
                .entry(r.owner(&format!("{j:08x}-job")).unwrap().to_owned())
                .or_insert(0) += 1;
        }
        for (n, c) in counts {
            assert!((7_000..=13_000).contains(&c), "{n} owns {c} of 30000");
        }
    }

    #[test]
    fn adding_a_node_moves_only_its_share() {
        let before = Ring::new(&names(3));
        let after = Ring::new(&names(4));
        let moved = (0..10_000)
            .filter(|j| {
                let k = format!("job-{j}");
                before.owner(&k) != after.owner(&k)
            })
            .count();
        assert!((1_500..=3_500).contains(&moved), "{moved} of 10000 moved");
        // Everything that moved, moved to the new node.
        for j in 0..10_000 {
            let k = format!("job-{j}");
            if before.owner(&k) != after.owner(&k) {
                assert_eq!(after.owner(&k), Some("node-3"));
            }
        }
    }

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned values: changing the hash would move every job of a running cluster
        // during a rolling upgrade.
        assert_eq!(fnv1a(b""), 0xecba_3df2_c338_3c52);
        assert_eq!(fnv1a(b"job-1"), fnv1a(b"job-1"));
        assert_ne!(fnv1a(b"job-1"), fnv1a(b"job-2"));
    }
}
