//! A client's ok reads of one key as a staircase, for the monotonic-reads checker.

/// A per-(client, key) staircase of ok reads: the Pareto set of (completion, version) points, so
/// "the highest version this client had seen before time t" is one binary search. Its contents do
/// not depend on insertion order (ties broken by op id). Most pairs see one point, kept inline:
/// a key group has many (client, key) pairs.
#[derive(Debug)]
pub enum Staircase {
    One(Point),
    Many(Vec<Point>),
}

/// A read on a staircase: completion, op id, version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub complete_ns: u64,
    pub id: u64,
    pub version: u64,
}

impl Staircase {
    pub fn new(p: Point) -> Self {
        Staircase::One(p)
    }

    pub fn insert(&mut self, p: Point) {
        let v = match self {
            Staircase::One(q) => {
                let earlier = (q.complete_ns, q.id) < (p.complete_ns, p.id);
                match (earlier, q.version >= p.version, p.version >= q.version) {
                    (true, true, _) => return, // p is dominated
                    (false, _, true) => {
                        // p dominates q
                        *q = p;
                        return;
                    }
                    (true, false, _) => vec![*q, p],
                    (false, _, false) => vec![p, *q],
                }
            }
            Staircase::Many(v) => {
                let pos = v.partition_point(|e| (e.complete_ns, e.id) < (p.complete_ns, p.id));
                if pos > 0 && v[pos - 1].version >= p.version {
                    return;
                }
                let end = pos
                    + v[pos..]
                        .iter()
                        .take_while(|e| e.version <= p.version)
                        .count();
                v.splice(pos..end, [p]);
                return;
            }
        };
        *self = Staircase::Many(v);
    }

    pub fn points(&self) -> &[Point] {
        match self {
            Staircase::One(p) => std::slice::from_ref(p),
            Staircase::Many(v) => v,
        }
    }

    /// The highest-version read completed strictly before `t`.
    pub fn before(&self, t: u64) -> Option<Point> {
        let pts = self.points();
        let i = pts.partition_point(|e| e.complete_ns < t);
        (i > 0).then(|| pts[i - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staircase_is_order_independent() {
        let pts = [
            (10, 1, 3),
            (5, 2, 1),
            (7, 3, 2),
            (12, 4, 2),
            (20, 5, 5),
            (20, 6, 5),
            (3, 7, 0),
        ];
        let pt = |&(complete_ns, id, version): &(u64, u64, u64)| Point {
            complete_ns,
            id,
            version,
        };
        let build = |order: &mut dyn Iterator<Item = &(u64, u64, u64)>| {
            let mut s = Staircase::new(pt(order.next().unwrap()));
            order.for_each(|p| s.insert(pt(p)));
            s.points().to_vec()
        };
        let a = build(&mut pts.iter());
        for rot in 0..pts.len() {
            let mut v = pts.to_vec();
            v.rotate_left(rot);
            assert_eq!(build(&mut v.iter()), a, "rotation {rot}");
            assert_eq!(build(&mut v.iter().rev()), a, "reversed rotation {rot}");
        }
        let s = Staircase::Many(a);
        let at = |t| s.before(t).map(|p| (p.version, p.id));
        assert_eq!(at(10), Some((2, 3)));
        assert_eq!(at(11), Some((3, 1)));
        assert_eq!(at(3), None);
        assert_eq!(at(100), Some((5, 5)));
    }
}
