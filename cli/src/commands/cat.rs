//! `cairn cat config|snapshot ID|tree ID|keys`: decrypted objects as JSON, for debugging.

use cairn_engine::ChunkId;

use crate::args::{CatArgs, GlobalArgs};
use crate::exit;

pub fn run(g: &GlobalArgs, a: &CatArgs) -> anyhow::Result<i32> {
    let repo = super::open(g)?;
    let doc = match (a.what.as_str(), a.id.as_deref()) {
        ("config", _) => serde_json::to_value(repo.config())?,
        ("snapshot", Some(spec)) => {
            let (id, s) = super::find_snapshot(&repo, spec, &Default::default())?;
            serde_json::json!({ "id": id.to_hex(), "snapshot": serde_json::to_value(&s)? })
        }
        ("tree", Some(id)) => serde_json::to_value(repo.load_tree(&ChunkId::from_hex(id)?)?)?,
        ("keys", _) => {
            let names = repo.list_names(cairn_engine::format::names::Dir::Keys)?;
            serde_json::json!({ "slots": names, "opened_with": repo.opened_with().to_hex() })
        }
        ("snapshot" | "tree", None) => bail_usage!("cat {} needs an id", a.what),
        (other, _) => bail_usage!("cannot cat {other:?}: use config, snapshot ID, tree ID or keys"),
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(exit::OK)
}
