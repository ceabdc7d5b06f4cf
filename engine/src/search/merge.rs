//! State merge helpers: exact duplicates and character edit distance between sibling steps.

/// Levenshtein distance between `a` and `b` over chars, capped at `cap` (returns `cap` as soon as
/// the distance is known to be at least `cap`). `cap = 0` only asks "equal or not" (0 or 1).
pub fn edit_distance_capped(a: &str, b: &str, cap: u32) -> u32 {
    if a == b {
        return 0;
    }
    if cap <= 1 {
        return 1;
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) >= cap as usize {
        return cap;
    }
    let mut prev: Vec<u32> = (0..=b.len() as u32).collect();
    let mut cur = vec![0u32; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i as u32 + 1;
        let mut row_min = cur[0];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + u32::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min >= cap {
            return cap;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()].min(cap)
}

/// The smallest capped distance from `candidate` to any of `others` (`cap` if there are none).
pub fn min_distance<'a>(
    candidate: &str,
    others: impl IntoIterator<Item = &'a str>,
    cap: u32,
) -> u32 {
    let cap = cap.max(1);
    let mut best = cap;
    for o in others {
        best = best.min(edit_distance_capped(candidate, o, cap));
        if best == 0 {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full(a: &str, b: &str) -> u32 {
        edit_distance_capped(a, b, u32::MAX)
    }

    #[test]
    fn known_distances() {
        assert_eq!(full("kitten", "sitting"), 3);
        assert_eq!(full("", "abc"), 3);
        assert_eq!(full("same", "same"), 0);
        assert_eq!(edit_distance_capped("kitten", "sitting", 2), 2);
        assert_eq!(edit_distance_capped("a", "b", 0), 1);
        assert_eq!(min_distance("abc", ["abd", "xyz"], 20), 1);
        assert_eq!(min_distance("abc", [], 20), 20);
        assert_eq!(min_distance("abc", ["abc"], 0), 0);
    }

    proptest! {
        #[test]
        fn capped_is_min_of_full_and_cap(a in "[ab ]{0,12}", b in "[ab ]{0,12}", cap in 0u32..15) {
            let f = full(&a, &b);
            let expect = if cap <= 1 { u32::from(f > 0) } else { f.min(cap) };
            prop_assert_eq!(edit_distance_capped(&a, &b, cap), expect);
        }

        #[test]
        fn distance_is_symmetric(a in "[abc]{0,10}", b in "[abc]{0,10}") {
            prop_assert_eq!(full(&a, &b), full(&b, &a));
        }
    }
}
