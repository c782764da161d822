//! Cargo's index layout: where a crate's index file lives (`1/a`, `2/ab`, `3/a/abc`,
//! `se/rd/serde`, lowercased). Shared by the git follower and the fixture registry.

/// The index file of a crate (`se/rd/serde`), as in cargo's layout.
pub fn index_path(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if !lower.is_ascii() {
        return None;
    }
    let prefix = match lower.len() {
        0 => return None,
        1 => "1".to_owned(),
        2 => "2".to_owned(),
        3 => format!("3/{}", &lower[..1]),
        _ => format!("{}/{}", &lower[..2], &lower[2..4]),
    };
    Some(format!("{prefix}/{lower}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_cargo_layout() {
        assert_eq!(index_path("a").as_deref(), Some("1/a"));
        assert_eq!(index_path("Ab").as_deref(), Some("2/ab"));
        assert_eq!(index_path("abc").as_deref(), Some("3/a/abc"));
        assert_eq!(index_path("Serde").as_deref(), Some("se/rd/serde"));
        assert_eq!(index_path("hello-bin").as_deref(), Some("he/ll/hello-bin"));
        assert_eq!(index_path(""), None);
        assert_eq!(index_path("ünï"), None);
    }
}
