//! Embeds `migrations/sqlite/*.sql` for the SQLite migrator (the PostgreSQL
//! migrations are embedded by `sqlx::migrate!`): a migration file dropped
//! into the folder is picked up without editing any list.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=migrations/sqlite");
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("migrations")
        .join("sqlite");
    let mut files: Vec<(i64, String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("migrations/sqlite")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("UTF-8 file name")
                .to_owned();
            let (version, description) = stem
                .split_once('_')
                .expect("migration files are named VERSION_DESCRIPTION.sql");
            let version: i64 = version.parse().expect("numeric migration version");
            (version, description.replace('_', " "), path)
        })
        .collect();
    files.sort_by_key(|(version, _, _)| *version);
    let mut out = String::from("&[\n");
    for (version, description, path) in &files {
        let _ = writeln!(
            out,
            "    ({version}, {description:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push(']');
    let target =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("sqlite_migrations.rs");
    std::fs::write(target, out).expect("write sqlite_migrations.rs");
}
