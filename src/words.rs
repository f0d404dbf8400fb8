//! How herald words a count for people: "1 person", "2 people". One home,
//! so no message says "1 people" or "1 addresses" again.

/// `n` with the noun that fits it: `count(1, "person", "people")` is
/// `1 person`, `count(3, "person", "people")` is `3 people`.
pub fn count<N: std::fmt::Display + PartialEq + From<u8>>(n: N, one: &str, many: &str) -> String {
    let word = if n == N::from(1) { one } else { many };
    format!("{n} {word}")
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1u64, "person", "people"), "1 person");
        assert_eq!(count(0u64, "person", "people"), "0 people");
        assert_eq!(count(2i64, "address", "addresses"), "2 addresses");
        assert_eq!(count(1usize, "address", "addresses"), "1 address");
    }
}
