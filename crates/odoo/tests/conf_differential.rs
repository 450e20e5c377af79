//! Differential test: Rampart's odoo.conf reader against Python's
//! configparser as Odoo uses it (`oracle_conf.py`), on seeded random files
//! built from the lines administrators write. Where both read a file, the
//! `[options]` Odoo sees must be the ones Rampart sees (the audit and
//! `rampart init` decide from them). Rampart may refuse a file Python
//! reads (it names the line); it must not read one differently.
//! `RAMPART_DIFF_CASES` sets the number of files (default 2000).

use std::path::Path;

use rampart_odoo::conf::OdooConf;
use rampart_testkit::oracle::{self, Rng, env_number, hex};

fn file(rng: &mut Rng) -> String {
    let lines = [
        "[options]",
        "[options]",
        "[ options ]",
        "[DEFAULT]",
        "[other]",
        "",
        "# a comment",
        "; a comment",
        "  # indented comment",
        "admin_passwd = secret",
        "list_db = False",
        "LIST_DB: True",
        "db_host=localhost",
        "proxy_mode = True",
        "  continued value",
        "\tmore",
        "workers = 4",
        "data_dir = /var/lib/odoo",
        "x = a = b",
        "y : c : d",
        "  indented_key = 1",
        "empty =",
    ];
    let n = 1 + rng.next_u64() % 10;
    let mut out = String::new();
    if !rng.next_u64().is_multiple_of(4) {
        out.push_str("[options]\n");
    }
    for _ in 0..n {
        out.push_str(lines[rng.below(lines.len())]);
        out.push('\n');
    }
    out
}

#[test]
fn odoo_conf_is_read_as_configparser_reads_it() {
    let n = env_number("RAMPART_DIFF_CASES", 2000) as usize;
    let mut rng = Rng::new(0x0d00_c0f1);
    let files: Vec<String> = (0..n).map(|_| file(&mut rng)).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle_conf.py");
    let lines = files.iter().map(|f| hex(f.as_bytes())).collect();
    let answers = oracle::run(
        "python3",
        script,
        "python3: the oracle is configparser",
        lines,
    );
    let (mut refused, mut refused_read, mut bad) = (0, 0, Vec::new());
    for (text, py) in files.iter().zip(&answers) {
        let ours = OdooConf::parse(Path::new("odoo.conf"), text);
        match (ours, py["ok"].as_bool().expect("ok")) {
            (Err(_), ok) => {
                refused += 1;
                refused_read += usize::from(ok);
            }
            (Ok(_), false) => bad.push(format!(
                "{text:?}: Rampart reads it, configparser refuses it"
            )),
            (Ok(c), true) => {
                let mut ours: Vec<(String, String)> = c
                    .options()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let mut theirs: Vec<(String, String)> = py["options"]
                    .as_array()
                    .expect("options")
                    .iter()
                    .map(|kv| {
                        (
                            kv[0].as_str().unwrap().to_string(),
                            kv[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                ours.sort();
                theirs.sort();
                if ours != theirs {
                    bad.push(format!(
                        "{text:?}:\n  rampart {ours:?}\n  python  {theirs:?}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "odoo.conf differential: {} files, {} refused by Rampart ({} of them read by configparser), {} disagreements",
        files.len(),
        refused,
        refused_read,
        bad.len()
    );
    bad.truncate(10);
    assert!(
        bad.is_empty(),
        "odoo.conf read differently:\n{}",
        bad.join("\n")
    );
}
