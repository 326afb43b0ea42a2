//! Taking into an open workspace the lanes another command wrote into its workspace.toml meanwhile (a
//! hosted fine-tuning job's `ft-` lane and its price), without losing the user's unsaved edits.

use toml_edit::{Item, Table};

use super::model::Workspace;

impl Workspace {
    /// Takes `disk` (workspace.toml as it is now, freshly loaded) in: with no unsaved edits, all of it; with
    /// edits, only lanes and prices appended after the text this workspace read (anything else would be
    /// overwritten by the next save, so it is refused with the reason). Existing lanes keep their places;
    /// returns how many lanes were added.
    pub fn adopt(&mut self, disk: Workspace) -> Result<usize, String> {
        let before = self.lanes.len();
        let same_order = disk.lanes.len() >= before && self.lanes.iter().zip(&disk.lanes).all(|(a, b)| a.id == b.id);
        if !same_order {
            return Err(format!(
                "{} changed on disk in its lanes' order or ids: reopen the workspace to take it",
                self.file.display()
            ));
        }
        if !self.dirty {
            *self = disk;
            return Ok(self.lanes.len() - before);
        }
        let appended = match (&self.on_disk, &disk.on_disk) {
            (Some(read), Some(now)) => now.starts_with(read.as_str()),
            _ => false,
        };
        if !appended {
            return Err(format!(
                "{} changed on disk and this window has unsaved edits: save refuses to overwrite it — reopen the \
                 workspace (your edits would be lost) or copy them first",
                self.file.display()
            ));
        }
        let new_lanes = disk.lanes.len() - before;
        let tables = disk.doc.get("lanes").and_then(Item::as_array_of_tables);
        for (i, lane) in disk.lanes.iter().enumerate().skip(before) {
            let table = tables.and_then(|t| t.get(i)).cloned().ok_or("the new lane is not a [[lanes]] table")?;
            let lanes = self.doc.entry("lanes").or_insert(Item::ArrayOfTables(Default::default()));
            lanes.as_array_of_tables_mut().ok_or("lanes must be written as [[lanes]] tables")?.push(table);
            self.lanes.push(lane.clone());
        }
        for (model, price) in &disk.pricing {
            if self.pricing.contains_key(model) {
                continue;
            }
            let from = disk.doc.get("pricing").and_then(|p| p.get(model.as_str())).cloned();
            let pricing = self.doc.entry("pricing").or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            });
            let table = pricing.as_table_mut().ok_or("[pricing] must be a table")?;
            table.insert(model, from.ok_or("the new price is not a [pricing] table")?);
            self.pricing.insert(model.clone(), *price);
        }
        self.on_disk = disk.on_disk;
        Ok(new_lanes)
    }
}
