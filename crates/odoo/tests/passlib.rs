//! The master password hash is what Odoo accepts: Python's passlib (the
//! library Odoo verifies admin_passwd with) checks hashes made here, and
//! hashes passlib makes verify here. scripts/test.sh installs passlib.

use std::process::Command;

use rampart_odoo::passwd::{DEFAULT_ROUNDS, Pbkdf2Hash};

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (scripts/test.sh installs it with passlib)");
    assert!(
        out.status.success(),
        "python3 failed (is passlib installed? python3 -m pip install passlib):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn passlib_verifies_our_hash_with_odoos_settings() {
    let password = "correct horse battery staple";
    let hash = Pbkdf2Hash::new(password, DEFAULT_ROUNDS).to_string();
    // Odoo's CryptContext for admin_passwd: pbkdf2_sha512 (plaintext deprecated).
    let script = "import sys\n\
from passlib.context import CryptContext\n\
ctx = CryptContext(['pbkdf2_sha512', 'plaintext'], deprecated=['plaintext'], pbkdf2_sha512__rounds=600000)\n\
h = sys.argv[1]\n\
print(ctx.identify(h), ctx.verify(sys.argv[2], h), ctx.verify('wrong', h), ctx.needs_update(h))";
    let got = python(script, &[&hash, password]);
    assert_eq!(got.trim(), "pbkdf2_sha512 True False False", "hash {hash}");
}

#[test]
fn we_verify_passlibs_hash() {
    let hash = python(
        "from passlib.hash import pbkdf2_sha512\nprint(pbkdf2_sha512.using(rounds=2000).hash('s3cret+/=é'))",
        &[],
    );
    let parsed = Pbkdf2Hash::parse(hash.trim()).expect("passlib's format parses");
    assert_eq!(parsed.rounds, 2000);
    assert!(parsed.verify("s3cret+/=é"));
    assert!(!parsed.verify("s3cret"));
}
