//! The trigger bodies of a SQLite capture install (see the parent module for the design).

use super::{ident, image_columns, objects, pending_columns, table_id, CaptureNames};
use crate::staging;
use crate::Table;

/// The expression a trigger row reference (`NEW`, `OLD`, `o`) uses for the rowid: the first of
/// SQLite's rowid aliases that no column shadows.
pub fn rowid_alias(t: &Table) -> Option<&'static str> {
    ["rowid", "_rowid_", "oid"].into_iter().find(|alias| {
        !t.columns
            .iter()
            .any(|c| c.name.as_str().eq_ignore_ascii_case(alias))
    })
}

/// Everything SQL needs to talk about one table's rows.
struct Parts<'a> {
    t: &'a Table,
    table: String,
    staging: String,
    pending: String,
    /// The shared staging columns an image of the table fills.
    columns: String,
    /// The pending table's columns but its seq.
    pending_columns: String,
    id: i64,
    ctx: String,
    rowid: Option<&'static str>,
}

impl<'a> Parts<'a> {
    fn new(t: &'a Table, names: &CaptureNames) -> Self {
        Self {
            t,
            table: t.name.quoted(crate::Dialect::Sqlite),
            staging: ident(objects::STAGING).sqlite().to_string(),
            pending: names.pending.sqlite().to_string(),
            columns: image_columns(t).join(", "),
            pending_columns: pending_columns(t)[1..].join(", "),
            id: table_id(&t.name),
            ctx: ident(objects::CONTEXT).sqlite().to_string(),
            rowid: if t.rowid { rowid_alias(t) } else { None },
        }
    }

    /// `r.rowid, r."a", r."b"` for a row reference `r`.
    fn values(&self, r: &str) -> String {
        let mut v = Vec::with_capacity(self.t.columns.len() + 1);
        if let Some(alias) = self.rowid {
            v.push(format!("{r}.{alias}"));
        }
        v.extend(
            self.t
                .columns
                .iter()
                .map(|c| format!("{r}.{}", c.name.sqlite())),
        );
        v.join(", ")
    }

    /// The metadata select list of a pending row (no seq, no table id).
    fn pending_meta(&self, op: &str, image: &str) -> String {
        format!(
            "'{op}', '{image}', c.\"tx\", NULL, julianday('now'), \
             c.\"login\", c.\"host\", c.\"app\", c.\"client_ip\""
        )
    }

    /// The metadata select list of a staged image (no seq: SQLite gives the rowid).
    fn meta(&self, op: &str, image: &str) -> String {
        format!("{}, {}", self.pending_meta(op, image), self.id)
    }

    /// Empties the pending table. The WHERE clause is always true (the seq is the rowid), but
    /// it keeps SQLite from its truncate optimisation, which rewrites the table's root page even
    /// when the table is already empty: a page more in every commit's WAL (4.2 frames per
    /// single-row insert instead of 3.2).
    fn clear_pending(&self) -> String {
        format!(
            "DELETE FROM {} WHERE {} IS NOT NULL;",
            self.pending,
            ident(staging::COL_SEQ).sqlite()
        )
    }

    /// The one-row source of a trigger's own images: the context row, if a writer declared one.
    fn context_source(&self) -> String {
        format!(
            "FROM (SELECT 1) AS one LEFT JOIN {ctx} AS c ON c.\"id\" = 1",
            ctx = self.ctx
        )
    }

    /// Column groups whose equality makes two rows collide: the rowid, the primary key (unless it
    /// is the rowid itself) and every unique key.
    fn conflict_keys(&self) -> Vec<Vec<String>> {
        let mut keys = Vec::new();
        if let Some(alias) = self.rowid {
            keys.push(vec![alias.to_string()]);
        }
        let ipk = self.rowid.is_some()
            && self.t.primary_key.len() == 1
            && self.t.columns[self.t.primary_key[0]]
                .sql_type
                .eq_ignore_ascii_case("INTEGER");
        let col = |i: &usize| self.t.columns[*i].name.sqlite().to_string();
        if !self.t.primary_key.is_empty() && !ipk {
            keys.push(self.t.primary_key.iter().map(col).collect());
        }
        for k in &self.t.unique_keys {
            keys.push(k.iter().map(col).collect());
        }
        keys
    }

    /// Identity of a row: rowid, or the primary key (WITHOUT ROWID tables always have one).
    fn identity(&self) -> Vec<String> {
        match self.rowid {
            Some(alias) => vec![alias.to_string()],
            None => self
                .t
                .primary_key
                .iter()
                .map(|i| self.t.columns[*i].name.sqlite().to_string())
                .collect(),
        }
    }

    /// The pending table's name for the identity columns (rowid lives in `rowtrail_rowid`).
    fn pending_identity(&self) -> Vec<String> {
        match self.rowid {
            Some(_) => vec![ident(staging::COL_ROWID).sqlite().to_string()],
            None => self.identity(),
        }
    }

    /// `a.x = b.y AND ...` over identity columns, compared byte for byte.
    fn same_identity(&self, a: &str, b: &str, a_pending: bool) -> String {
        let left = if a_pending {
            self.pending_identity()
        } else {
            self.identity()
        };
        left.iter()
            .zip(self.identity())
            .map(|(l, r)| format!("{a}.{l} = {b}.{r} COLLATE BINARY"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The BEFORE trigger body that stashes rows the new row collides with.
    fn stash(&self, extra_where: &str) -> String {
        let collide = self
            .conflict_keys()
            .iter()
            .map(|k| {
                let eq: Vec<String> = k.iter().map(|c| format!("o.{c} = NEW.{c}")).collect();
                format!("({})", eq.join(" AND "))
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let order = self
            .identity()
            .iter()
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "    {clear}\n    \
             INSERT INTO {pending} ({cols})\n      SELECT {meta}, {vals}\n      \
             FROM {table} AS o LEFT JOIN {ctx} AS c ON c.\"id\" = 1\n      \
             WHERE ({collide}){extra_where}\n      ORDER BY {order};\n",
            clear = self.clear_pending(),
            pending = self.pending,
            cols = self.pending_columns,
            meta = self.pending_meta("D", "B"),
            vals = self.values("o"),
            table = self.table,
            ctx = self.ctx,
        )
    }

    /// The SELECT of stashed rows that vanished, as delete images: the first arm of an AFTER
    /// trigger's INSERT, so that their seqs come right before the trigger's own images.
    fn settled(&self, exclude_old: bool) -> String {
        let mut pcols: Vec<String> = pending_columns(self.t)[1..]
            .iter()
            .map(|c| format!("p.{c}"))
            .collect();
        pcols.insert(9, self.id.to_string());
        let took_its_place = self.same_identity("p", "NEW", true);
        let gone = format!(
            "NOT EXISTS (SELECT 1 FROM {table} AS o WHERE {})",
            self.same_identity("p", "o", true),
            table = self.table
        );
        let not_self = if exclude_old {
            format!(" AND NOT ({})", self.same_identity("p", "OLD", true))
        } else {
            String::new()
        };
        format!(
            "SELECT * FROM (SELECT {pcols} FROM {pending} AS p\n        \
             WHERE (({took_its_place}) OR {gone}){not_self} ORDER BY p.{seq})",
            pcols = pcols.join(", "),
            pending = self.pending,
            seq = ident(staging::COL_SEQ).sqlite(),
        )
    }

    /// One INSERT of the trigger's images (after the settled pending rows, with `settle`), in
    /// seq order; with `settle`, the pending table is emptied after it.
    fn capture(&self, op: &str, images: &[(&str, &str)], settle: Option<bool>) -> String {
        let mut selects: Vec<String> = settle.iter().map(|&ex| self.settled(ex)).collect();
        selects.extend(images.iter().map(|(image, row)| {
            format!(
                "SELECT {}, {} {}",
                self.meta(op, image),
                self.values(row),
                self.context_source()
            )
        }));
        let mut s = format!(
            "    INSERT INTO {staging} ({cols})\n      {};\n",
            selects.join("\n      UNION ALL "),
            staging = self.staging,
            cols = self.columns,
        );
        if settle.is_some() {
            s.push_str(&format!("    {}\n", self.clear_pending()));
        }
        s
    }
}

/// DROP/CREATE statements for the five triggers of `t`.
pub(super) fn all(t: &Table, names: &CaptureNames) -> String {
    let p = Parts::new(t, names);
    let [bi, bu, ai, au, ad] = &names.triggers;
    let mut s = String::new();
    for trig in &names.triggers {
        s.push_str(&format!("DROP TRIGGER IF EXISTS {};\n", trig.sqlite()));
    }

    // BEFORE INSERT: only when the new row collides with an existing one.
    let collide_any = p
        .conflict_keys()
        .iter()
        .map(|k| {
            let eq: Vec<String> = k.iter().map(|c| format!("o.{c} = NEW.{c}")).collect();
            eq.join(" AND ")
        })
        .map(|cond| format!("EXISTS (SELECT 1 FROM {} AS o WHERE {cond})", p.table))
        .collect::<Vec<_>>()
        .join("\n    OR ");
    if !collide_any.is_empty() {
        s.push_str(&format!(
            "CREATE TRIGGER {bi} BEFORE INSERT ON {table} FOR EACH ROW\n  WHEN {collide_any}\n  BEGIN\n{}  END;\n",
            p.stash(""),
            bi = bi.sqlite(),
            table = p.table,
        ));
        // BEFORE UPDATE: only when a key column changes into a value another row holds.
        let not_self = p
            .identity()
            .iter()
            .map(|c| format!("o.{c} IS OLD.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let when = p
            .conflict_keys()
            .iter()
            .map(|k| {
                let changed: Vec<String> = k
                    .iter()
                    .map(|c| format!("NEW.{c} IS NOT OLD.{c}"))
                    .collect();
                let eq: Vec<String> = k.iter().map(|c| format!("o.{c} = NEW.{c}")).collect();
                format!(
                    "(({}) AND EXISTS (SELECT 1 FROM {} AS o WHERE {} AND NOT ({not_self})))",
                    changed.join(" OR "),
                    p.table,
                    eq.join(" AND ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n    OR ");
        s.push_str(&format!(
            "CREATE TRIGGER {bu} BEFORE UPDATE ON {table} FOR EACH ROW\n  WHEN {when}\n  BEGIN\n{}  END;\n",
            p.stash(&format!(" AND NOT ({not_self})")),
            bu = bu.sqlite(),
            table = p.table,
        ));
    }

    s.push_str(&format!(
        "CREATE TRIGGER {ai} AFTER INSERT ON {table} FOR EACH ROW\n  BEGIN\n{}  END;\n",
        p.capture("I", &[("A", "NEW")], Some(false)),
        ai = ai.sqlite(),
        table = p.table,
    ));
    s.push_str(&format!(
        "CREATE TRIGGER {au} AFTER UPDATE ON {table} FOR EACH ROW\n  BEGIN\n{}  END;\n",
        p.capture("U", &[("B", "OLD"), ("A", "NEW")], Some(true)),
        au = au.sqlite(),
        table = p.table,
    ));
    s.push_str(&format!(
        "CREATE TRIGGER {ad} AFTER DELETE ON {table} FOR EACH ROW\n  BEGIN\n    {clear}\n{}  END;\n",
        p.capture("D", &[("B", "OLD")], None),
        ad = ad.sqlite(),
        table = p.table,
        clear = p.clear_pending(),
    ));
    s
}
