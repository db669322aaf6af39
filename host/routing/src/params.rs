//! A route's path parameters for one request: read from the path on demand (by the segment
//! positions the route's pattern recorded), so a request that never asks for one pays nothing.

/// A route's path parameters for one request, read from the path on demand.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    layout: &'a [(Box<str>, usize, bool)],
    path: &'a str,
}

impl<'a> Params<'a> {
    /// The parameters laid out as `layout` says (name, segment position, catch-all), in `path`.
    pub fn new(layout: &'a [(Box<str>, usize, bool)], path: &'a str) -> Params<'a> {
        Params { layout, path }
    }

    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let (_, pos, catch_all) = self.layout.iter().find(|(n, _, _)| &**n == name)?;
        let mut rest = self.path.strip_prefix('/')?;
        for _ in 0..*pos {
            rest = rest.split_once('/')?.1;
        }
        Some(if *catch_all {
            rest
        } else {
            rest.split('/').next().unwrap_or(rest)
        })
    }

    /// All (name, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.layout
            .iter()
            .filter_map(|(n, _, _)| self.get(n).map(|v| (&**n, v)))
    }
}
