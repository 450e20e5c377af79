//! The files `rampart init` writes live under `crates/odoo/templates/`,
//! read at build time with `include_str!`: a reader (or `systemd-analyze
//! verify`, `nft -c`, `docker compose config`) sees each file as a file,
//! not as a Rust string literal. Placeholders are `{{name}}`; values are
//! inserted as given (the caller escapes for the file's language) and are
//! never scanned for placeholders themselves. Eight names do not warrant a
//! template engine.

macro_rules! templates {
    ($($name:ident = $file:literal;)*) => {
        $(
            #[doc = concat!("`templates/", $file, "`.")]
            pub const $name: &str = include_str!(concat!("../templates/", $file));
        )*
        /// Every template by file name, for tests and tools.
        pub const ALL: &[(&str, &str)] = &[$(($file, $name)),*];
    };
}

templates! {
    RAMPART_TOML = "rampart.toml";
    ODOO_CONF = "odoo.conf";
    POSTGRES_ROLES = "postgres-roles.sql";
    POSTGRES_ROLES_STRICT = "postgres-roles-strict.sql";
    POSTGRES_ROLES_FLEXIBLE = "postgres-roles-flexible.sql";
    ODOO_SERVICE = "odoo.service";
    RAMPART_SERVICE = "rampart.service";
    RAMPART_LOGROTATE = "rampart.logrotate";
    COMPOSE_YAML = "compose.yaml";
    RAMPART_NFT = "rampart.nft";
    ENV = "env";
}

/// `template` with each `{{name}}` replaced by its value in `vars`.
///
/// Templates are part of the program: a placeholder without a value, or a
/// value no placeholder uses, is a bug and panics (every template is
/// rendered by the unit tests).
///
/// ```
/// use rampart_odoo::template::render;
/// assert_eq!(render("Odoo {{v}}\n", &[("v", "18")]), "Odoo 18\n");
/// ```
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut used = vec![false; vars.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .unwrap_or_else(|| panic!("template: unclosed {{{{ at {:?}", &rest[start..]));
        let name = &after[..end];
        let i = vars
            .iter()
            .position(|(k, _)| *k == name)
            .unwrap_or_else(|| panic!("template: no value for {{{{{name}}}}}"));
        used[i] = true;
        out.push_str(vars[i].1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        panic!("template: {:?} is given but never used", vars[i].0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn fills_placeholders_once_and_never_rescans_values() {
        assert_eq!(
            render("a {{x}} b {{y}} {{x}}", &[("x", "{{y}}"), ("y", "2")]),
            "a {{y}} b 2 {{y}}"
        );
        assert_eq!(render("no placeholders", &[]), "no placeholders");
    }

    #[test]
    fn every_file_under_templates_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = super::ALL.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    #[should_panic(expected = "no value for {{z}}")]
    fn a_missing_value_is_a_bug() {
        render("{{z}}", &[]);
    }

    #[test]
    #[should_panic(expected = "never used")]
    fn an_unused_value_is_a_bug() {
        render("x", &[("y", "1")]);
    }
}
