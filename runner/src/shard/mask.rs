//! Secret values replaced by `***` wherever a shard's output could carry
//! them: log chunks, and the test names and messages its reports hold.

/// The secret values of one lease.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    values: Vec<Vec<u8>>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a String>) -> Masker {
        Masker {
            values: values
                .into_iter()
                .filter(|v| !v.is_empty())
                .map(|v| v.as_bytes().to_vec())
                .collect(),
        }
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
}
