//! Secret values replaced by `***` wherever a shard's output could carry
//! them: log chunks, the test names and messages its reports hold, and the
//! reasons and details its result carries — in every form `forms` lists.

mod forms;

/// The secret values of one lease.
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, so a secret that contains another is masked whole.
    values: Vec<Vec<u8>>,
}

/// Lines of a multi-line secret (a PEM key) shorter than this are not
/// masked on their own: `-----` or a blank would mask half the log.
const MIN_LINE: usize = 8;

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.values.len())
    }
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a String>) -> Masker {
        let mut all: Vec<Vec<u8>> = Vec::new();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            for form in forms::of(v) {
                // Output arrives in chunks of whole lines: a multi-line
                // secret (a PEM key, also as a JSON secret's leaf) printed
                // across two chunks is masked line by line.
                let text = String::from_utf8_lossy(&form).into_owned();
                if text.trim_end().contains('\n') {
                    all.extend(
                        text.lines()
                            .map(str::trim_end)
                            .filter(|l| l.len() >= MIN_LINE)
                            .map(|l| l.as_bytes().to_vec()),
                    );
                }
                all.push(form);
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        all.dedup();
        Masker { values: all }
    }

    /// A state with the words it carries masked.
    pub fn state(&self, state: buildfleet_model::State) -> buildfleet_model::State {
        use buildfleet_model::State;
        match state {
            State::Failed(mut f) => {
                f.reason = self.text(f.reason);
                State::Failed(f)
            }
            State::Cancelled { reason } => State::Cancelled {
                reason: self.text(reason),
            },
            State::Skipped { reason } => State::Skipped {
                reason: self.text(reason),
            },
            State::RunnerLost { runner } => State::RunnerLost {
                runner: self.text(runner),
            },
            State::ConditionFalse { why } => State::ConditionFalse {
                why: self.text(why),
            },
            other => other,
        }
    }

    /// The longest form masked: a chunk that ends mid-line keeps this much
    /// minus one back until the next, so no value straddles the cut.
    pub fn longest(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }

    pub fn bytes(&self, data: Vec<u8>) -> Vec<u8> {
        let mut data = data;
        for m in &self.values {
            if data.windows(m.len()).all(|w| w != m.as_slice()) {
                continue;
            }
            let mut out = Vec::with_capacity(data.len());
            let mut i = 0;
            while i < data.len() {
                if data[i..].starts_with(m) {
                    out.extend_from_slice(b"***");
                    i += m.len();
                } else {
                    out.push(data[i]);
                    i += 1;
                }
            }
            data = out;
        }
        data
    }

    pub fn text(&self, text: String) -> String {
        if self.values.is_empty() {
            return text;
        }
        String::from_utf8(self.bytes(text.into_bytes()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_of_every_value_is_masked() {
        let secrets = ["s3cr3t".to_string(), "tok".to_string(), String::new()];
        let m = Masker::new(secrets.iter());
        assert_eq!(
            m.text("a s3cr3t and tok, s3cr3ts3cr3t".into()),
            "a *** and ***, ******"
        );
        assert_eq!(m.text("nothing here".into()), "nothing here");
        assert_eq!(Masker::default().text("s3cr3t".into()), "s3cr3t");
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole_whatever_the_order() {
        for order in [["tok", "tokensecret"], ["tokensecret", "tok"]] {
            let values: Vec<String> = order.iter().map(|s| s.to_string()).collect();
            let m = Masker::new(values.iter());
            assert_eq!(m.text("x tokensecret y tok".into()), "x *** y ***");
        }
    }

    #[test]
    fn a_multi_line_secret_is_masked_line_by_line_too() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----\n".to_string();
        let m = Masker::new([&key]);
        // As if the key was printed across two chunks.
        assert_eq!(
            m.text("-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n".into()),
            "***\n***\n"
        );
        assert_eq!(m.text(key.clone()), "***");
        assert!(!format!("{m:?}").contains("MIIE"), "Debug shows no value");
    }
}
