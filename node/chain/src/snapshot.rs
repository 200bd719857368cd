//! Snapshots of the chain (format and checks: `aergo_storage::snapshot`; design: `docs/fleet.md`).
//! This layer decides what the storage layer cannot: the height (the last final block) and the
//! election records the producer schedule needs above it, and it checks on import that the
//! records given are all an election reads.

use crate::schedule::Schedule;
use crate::{genesis_hash, Chain, ChainError};
use aergo_config::genesis::Genesis;
use aergo_exec::governance::RecordError;
use aergo_storage::snapshot::{self, ExportPlan, ExportReport, ImportReport, Importer};
use aergo_storage::{LogOptions, LogReader, StateStore};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// What to export from `store` at its last final height.
pub fn plan(store: &StateStore, schedule: &Schedule) -> Result<ExportPlan, ChainError> {
    let height = match store.finalized()? {
        Some((h, _)) if h > 0 => h,
        _ => {
            return Err(ChainError::Snapshot(snapshot::SnapshotError::Export(
                "no block above genesis is final yet".into(),
            )))
        }
    };
    let mut elections = Vec::new();
    for at in schedule.elections_needed_after(height) {
        let keys = schedule.election_keys(|key: &[u8]| store.get_at(key, at)).map_err(|e| {
            ChainError::Snapshot(snapshot::SnapshotError::Export(format!("the election at height {at}: {e}")))
        })?;
        elections.push((at, keys));
    }
    let headers_from = elections.iter().map(|(at, _)| *at).min().unwrap_or(height);
    Ok(ExportPlan { height, headers_from, elections })
}

/// Writes a snapshot of `store` at its last final height to `out`.
pub fn export_from<W: Write>(
    store: &StateStore,
    reader: &LogReader,
    schedule: &Schedule,
    genesis: &Genesis,
    out: W,
) -> Result<(ExportReport, W), ChainError> {
    let plan = plan(store, schedule)?;
    Ok(snapshot::export(store, reader, &genesis.chain_id, &plan, out)?)
}

/// Writes a snapshot of the chain in `data_dir` (the node stopped) to `out`.
pub fn export<W: Write>(data_dir: &Path, genesis: &Genesis, out: W) -> Result<(ExportReport, W), ChainError> {
    let (chain, _) = Chain::open(data_dir, genesis, LogOptions::default())?;
    let store = chain.store();
    export_from(&store, &chain.log_reader(), chain.schedule(), genesis, out)
}

/// Checks, before the state is taken, that the snapshot carries every election the schedule
/// needs above its height and every record each of them reads.
fn check_elections(importer: &Importer, schedule: &Schedule) -> Result<(), String> {
    let Some(height) = importer.manifest().map(|m| m.height) else {
        return Err("no manifest".into());
    };
    let given: HashMap<u64, HashMap<&[u8], Option<&Vec<u8>>>> = importer
        .elections()
        .iter()
        .map(|(at, records)| (*at, records.iter().map(|(k, v)| (k.as_slice(), v.as_ref())).collect()))
        .collect();
    for at in schedule.elections_needed_after(height) {
        let records = given
            .get(&at)
            .ok_or_else(|| format!("the election at height {at} (producers above {height}) is missing"))?;
        schedule
            .election_keys(|key: &[u8]| match records.get(key) {
                Some(value) => Ok(value.cloned()),
                None => Err(format!("record {} is missing", hex::encode(key))),
            })
            .map_err(|e: RecordError| format!("the election at height {at}: {e}"))?;
    }
    Ok(())
}

/// An importer into `data_dir` (which must hold no chain) for the chain `genesis` makes, that
/// also checks the elections against the schedule (see [`Importer`]).
pub fn importer(data_dir: &Path, genesis: &Genesis) -> Result<Importer, ChainError> {
    let hash = genesis_hash(genesis)?;
    let schedule = Schedule::from_genesis(genesis);
    Ok(Importer::new(data_dir, &genesis.chain_id, hash)?
        .with_check(Box::new(move |importer| check_elections(importer, &schedule))))
}

/// Builds `data_dir`'s chain from the snapshot read from `input`, for the chain `genesis` makes.
/// A node opened on it continues from the snapshot's height.
pub fn import<R: Read>(input: R, data_dir: &Path, genesis: &Genesis) -> Result<ImportReport, ChainError> {
    Ok(snapshot::import(input, importer(data_dir, genesis)?)?)
}

/// The frames that open a snapshot of `store` at its last final height (what a peer asks for
/// first; the leaves and rows follow by pages: [`snapshot::leaves_frame`], [`snapshot::rows_frame`]).
pub fn head_frames(
    store: &StateStore,
    reader: &LogReader,
    schedule: &Schedule,
    genesis: &Genesis,
) -> Result<Vec<snapshot::Frame>, ChainError> {
    let plan = plan(store, schedule)?;
    Ok(snapshot::head_frames(store, reader, &genesis.chain_id, &plan)?)
}
