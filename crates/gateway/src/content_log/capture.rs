//! Bounded text capture: a completion accumulated from stream deltas, or a prompt, kept up to
//! a cap so a huge request cannot make a content record (or memory) grow without bound.

/// What is stored of a prompt or a completion: 64 KiB each.
pub const STORED_CAP: usize = 64 * 1024;

/// Captured beyond the stored cap and redacted with it, then cut: a secret that straddles the
/// cap is still whole when redaction sees it.
const MARGIN: usize = 4 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Capture {
    pub text: String,
    pub truncated: bool,
}

impl Capture {
    pub fn push(&mut self, s: &str) {
        if self.truncated {
            return;
        }
        let room = STORED_CAP + MARGIN - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
        } else {
            self.text.push_str(&s[..floor_char_boundary(s, room)]);
            self.truncated = true;
        }
    }

    pub fn of(s: &str) -> Self {
        let mut c = Self::default();
        c.push(s);
        c
    }
}

/// Cuts redacted text to the stored cap, on a character boundary; true when it cut.
pub fn cut(text: &mut String) -> bool {
    if text.len() <= STORED_CAP {
        return false;
    }
    text.truncate(floor_char_boundary(text, STORED_CAP));
    true
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut i = at.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_a_char_boundary() {
        let mut c = Capture::default();
        for _ in 0..40_000 {
            c.push("é"); // 2 bytes
        }
        assert!(c.truncated);
        assert!(c.text.len() <= STORED_CAP + MARGIN);
        let mut t = c.text.clone();
        assert!(cut(&mut t));
        assert!(t.len() <= STORED_CAP && t.chars().all(|ch| ch == 'é'));
        let mut short = String::from("abc");
        assert!(!cut(&mut short));
    }
}
