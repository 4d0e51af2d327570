//! Rebuild when any migration changes: `embed_migrations!` alone does not notice new migration directories.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=tests/fixtures/migrations");
}
