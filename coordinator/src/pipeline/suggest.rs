//! "Did you mean" suggestions for misspelt keys and step names.

/// The closest candidate to `word`, if it is close enough to be a plausible
/// typo. The allowance grows with the candidate's length so short names need
/// a near-exact match while longer ones tolerate a couple of slips; on a tie
/// the earliest candidate wins, keeping suggestions deterministic.
pub(super) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = edit_distance(&word.to_lowercase(), &candidate.to_lowercase())
            // A case-only difference still deserves a suggestion.
            .max(usize::from(!candidate.eq_ignore_ascii_case(word)));
        let allowance = (candidate.chars().count() / 3).max(1);
        if distance <= allowance && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Optimal-string-alignment distance: Levenshtein plus adjacent
/// transpositions, because swapped letters (`stpes`) are the most common typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut value = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = value;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_transpositions_as_one_edit() {
        assert_eq!(edit_distance("stpes", "steps"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggests_only_plausible_typos() {
        let keys = ["name", "steps"];
        assert_eq!(closest("stpes", keys), Some("steps"));
        assert_eq!(closest("Steps", keys), Some("steps"));
        assert_eq!(closest("nmae", keys), Some("name"));
        assert_eq!(closest("commands", keys), None);
        assert_eq!(closest("x", ["env"]), None);
    }
}
