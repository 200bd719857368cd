//! `aergo`: the command-line client of an AERGO node (see `aergo --help`).

use aergo_api::{amount_string, AergoApiClient, BlockTxs};
use aergo_primitives::crypto::{KeyFile, Keypair};
use aergo_primitives::types::{Address, Payload, RaftAdmin, RepoAdmin, TxBody};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use jsonrpsee::http_client::{HttpBackend, HttpClientBuilder};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod proof;

#[derive(Parser)]
#[command(name = "aergo", version, about = "AERGO Chain command-line client")]
struct Cli {
    /// The node's JSON-RPC URL.
    #[arg(long, global = true, env = "AERGO_RPC", default_value = "http://127.0.0.1:7845")]
    rpc: String,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The branch to read, and to sign transactions for (docs/branches.md): a transaction signed
    /// for a branch runs there and nowhere else.
    #[arg(long, global = true, default_value = aergo_primitives::types::MAIN_BRANCH)]
    branch: String,
    /// A repository the node hosts beside its public chain (docs/repositories.md): every
    /// command then reads and writes it (its methods are at RPC/repo/NAME).
    #[arg(long, global = true)]
    repo: Option<String>,
    /// The key that signs every request (X-Aergo-Auth). With --repo: a member's key of a private
    /// repository; not given, the box's member key of the repository,
    /// AERGO_KEYS_DIR/member-NAME.key (default /var/lib/aergo/keys, where provisioning puts it),
    /// when there is one, else a transaction command signs with its --key. Without --repo: the
    /// key of a private branch's creator or merger, whose reads a member node serves only so.
    #[arg(long, global = true, env = "AERGO_MEMBER_KEY")]
    member_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key files.
    #[command(subcommand)]
    Account(AccountCmd),
    /// An account's balance and nonce (at the head, at --height, or at --at REF).
    Balance {
        address: String,
        #[arg(long)]
        height: Option<u64>,
        /// A REF instead of --branch and --height: BRANCH, BRANCH@HEIGHT or a tag.
        #[arg(long, conflicts_with = "height")]
        at: Option<String>,
    },
    /// Send a transfer.
    Send {
        #[command(flatten)]
        tx: TxArgs,
        #[arg(long)]
        to: String,
        /// Amount in the smallest unit.
        #[arg(long)]
        amount: String,
    },
    /// A transaction by hash; `tx sign` and `tx send` make and submit one from its JSON form
    /// (docs/dapps.md).
    #[command(args_conflicts_with_subcommands = true)]
    Tx {
        hash: Option<String>,
        #[command(subcommand)]
        cmd: Option<TxCmd>,
    },
    /// A transaction's receipt.
    Receipt { hash: String },
    /// A contract's events, oldest first, from the node's event index (`docs/dapps.md`).
    Events {
        contract: String,
        /// Only events of this name.
        #[arg(long)]
        name: Option<String>,
        /// Only events whose argument NAME equals VALUE (NAME=VALUE; repeatable; a number, text,
        /// true/false or null).
        #[arg(long = "arg")]
        args: Vec<String>,
        /// First block (default: the first the index holds).
        #[arg(long)]
        from: Option<u64>,
        /// Last block (default: the head).
        #[arg(long)]
        to: Option<u64>,
        /// At most this many (default: all of the range).
        #[arg(long)]
        limit: Option<usize>,
        /// Then keep printing new ones as blocks add them, until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// A block (the head by default).
    Block {
        height: Option<u64>,
        /// Show the transactions in full.
        #[arg(long)]
        full: bool,
        /// A REF instead of --branch and HEIGHT: BRANCH, BRANCH@HEIGHT or a tag.
        #[arg(long, conflicts_with = "height")]
        at: Option<String>,
    },
    /// Stake: lock balance (it weighs on the account's votes), unlock it, or show it.
    #[command(subcommand)]
    Stake(StakeCmd),
    /// Vote for block-producer candidates (replaces the account's earlier votes; its whole stake
    /// counts for each).
    Vote {
        #[command(flatten)]
        tx: TxArgs,
        /// Candidates: addresses (registered candidates) or hex public keys.
        candidates: Vec<String>,
    },
    /// Block producers: register the key as a candidate, or list the set and the candidates.
    #[command(subcommand)]
    Bp(BpCmd),
    /// Branches of the chain's data (docs/branches.md): list them, make one, show one.
    #[command(subcommand)]
    Branch(BranchCmd),
    /// Tags: immutable names for blocks.
    #[command(subcommand)]
    Tag(TagCmd),
    /// A chain agreed by Raft (docs/repositories.md): its members, and membership changes signed
    /// by a voter's node key (--key DATA_DIR/node.key).
    #[command(subcommand)]
    Raft(RaftCmd),
    /// The repositories the node hosts beside its public chain (docs/repositories.md); adding
    /// and removing are for the node's own box (`[rpc] admin_from`).
    #[command(subcommand)]
    Repo(RepoCmd),
    /// AergoSQL contracts: deploy a script, call a function.
    #[command(subcommand)]
    Contract(ContractCmd),
    /// Read a contract: a SELECT over its tables, or --function with arguments (at the head, or at
    /// --height).
    Query {
        /// The contract's address.
        contract: String,
        /// A SELECT statement (omit with --function).
        sql: Option<String>,
        /// Call this function read-only instead (its changes are discarded).
        #[arg(long, conflicts_with = "sql")]
        function: Option<String>,
        /// Arguments of --function.
        #[arg(long = "arg")]
        args: Vec<String>,
        #[arg(long)]
        height: Option<u64>,
        /// A REF instead of --branch and --height: BRANCH, BRANCH@HEIGHT or a tag.
        #[arg(long, conflicts_with = "height")]
        at: Option<String>,
    },
    /// Blocks of a branch, newest first, like `git log`: from the branch's head (--branch), or from
    /// REF (BRANCH, BRANCH@HEIGHT or a tag), down through the base into the parent.
    Log {
        #[arg(value_name = "REF")]
        reference: Option<String>,
        /// How many blocks.
        #[arg(short = 'n', long = "max-count", default_value_t = 10)]
        count: u64,
    },
    /// Bring branch SOURCE into the branch it was made on (or --into), like `git merge`: with the
    /// replay strategy its transactions since the last merge run again there, and those that no
    /// longer fit are dropped; the receipt lists each one (docs/branches.md).
    Merge {
        #[command(flatten)]
        tx: TxArgs,
        source: String,
        /// The branch to merge into (default: the branch SOURCE was made on).
        #[arg(long)]
        into: Option<String>,
        /// replay (run the source's transactions again), three-way, ours or theirs.
        #[arg(long, default_value = "replay")]
        strategy: String,
        /// Merge up to this height of SOURCE (default: its last final block).
        #[arg(long)]
        upto: Option<u64>,
    },
    /// What differs between two points, like `git diff REF1...REF2`: the accounts, contract rows
    /// and other state whose values differ, each marked with the side that changed it since the
    /// merge base (- REF1's, + REF2's, ~ both). REF: BRANCH (its last final block), BRANCH@HEIGHT
    /// or a tag.
    Diff {
        #[arg(value_name = "REF1")]
        from: String,
        #[arg(value_name = "REF2")]
        to: String,
        /// At most this many entries (at most 10000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
    /// State proofs (docs/dapps.md): an account's or a contract row's value with its Merkle proof
    /// against the state root of a block's header, printed as the JSON document that
    /// `aergo verify-proof` checks.
    #[command(subcommand)]
    Proof(ProofCmd),
    /// Check a proof document (from `aergo proof`) against a header you trust, with no node:
    /// exit 0 and what it proves, or exit 1 and which check failed.
    VerifyProof {
        /// The proof document.
        file: PathBuf,
        /// The trusted header: a file, or inline JSON, of `{hash, header}` (what
        /// `aergo --json block H` prints).
        #[arg(long)]
        header: String,
    },
    /// The chain's state.
    Chain,
    /// The node's identity and role.
    Node,
}

#[derive(Subcommand)]
enum TxCmd {
    /// Sign a transaction from its JSON form (docs/dapps.md, "The JSON form of a transaction") and
    /// print the signed transaction, {hash, tx, body}. Without --offline a body without chain_id
    /// or nonce takes them from the node; with it, no node is asked.
    Sign {
        /// The JSON body: a file, or - for standard input.
        body: PathBuf,
        /// Key file of the sender (an encrypted keystore, or a plain devnet/testnet key).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Ask no node: chain_id and nonce must be in the body.
        #[arg(long)]
        offline: bool,
        /// Write the signed transaction to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send a signed transaction: a file `tx sign` wrote, or one line of hex.
    Send {
        file: PathBuf,
        /// Wait for the receipt (exit status 2 when the transaction failed).
        #[arg(long)]
        wait: bool,
        /// Do not send it: what it would do on the node's pending state (exit status 2 when it
        /// would fail).
        #[arg(long, conflicts_with = "wait")]
        estimate: bool,
    },
}

#[derive(Subcommand)]
enum ProofCmd {
    /// An account (present or absent) at the head, at --height, or at --at REF.
    Account {
        address: String,
        #[arg(long)]
        height: Option<u64>,
        /// A REF instead of --branch and --height: BRANCH, BRANCH@HEIGHT or a tag.
        #[arg(long, conflicts_with = "height")]
        at: Option<String>,
    },
    /// A contract's row by table and primary-key values (in key order: a number, text,
    /// true/false).
    Row {
        contract: String,
        table: String,
        #[arg(required = true)]
        key: Vec<String>,
        #[arg(long)]
        height: Option<u64>,
        /// A REF instead of --branch and --height: BRANCH, BRANCH@HEIGHT or a tag.
        #[arg(long, conflicts_with = "height")]
        at: Option<String>,
    },
}

/// What every transaction command takes.
#[derive(clap::Args)]
struct TxArgs {
    /// Key file of the sender (an encrypted keystore, or a plain devnet/testnet key).
    #[arg(long)]
    key: PathBuf,
    /// Fee in the smallest unit (default 0). For contract transactions it is the gas limit (default
    /// 2000000): the gas used is charged, the rest is returned.
    #[arg(long)]
    fee: Option<String>,
    /// Nonce to use (default: the sender's next, counting its transactions in the pool).
    #[arg(long)]
    nonce: Option<u64>,
    /// Wait for the receipt (exit status 2 when the transaction failed).
    #[arg(long)]
    wait: bool,
    /// Do not send it: run it on the node's pending state and print what it would do (the fee it
    /// would pay, its result and events); exit status 2 when it would fail.
    #[arg(long, conflicts_with = "wait")]
    estimate: bool,
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ContractCmd {
    /// Deploy the AergoSQL script in FILE; prints the transaction hash and the contract address.
    Deploy {
        #[command(flatten)]
        tx: TxArgs,
        file: PathBuf,
        /// Native coins sent to the contract's account.
        #[arg(long, default_value = "0")]
        amount: String,
    },
    /// Call FUNCTION of the contract at ADDRESS with ARGS (numbers, text, true/false, null; each is
    /// converted to the parameter's type).
    Call {
        #[command(flatten)]
        tx: TxArgs,
        address: String,
        function: String,
        args: Vec<String>,
        /// Native coins sent with the call (`value()` in SQL).
        #[arg(long, default_value = "0")]
        amount: String,
    },
    /// A contract's tables, functions with the rows each may read and write, and (--source) its
    /// script.
    Show {
        address: String,
        #[arg(long)]
        height: Option<u64>,
        #[arg(long)]
        source: bool,
    },
}

#[derive(Subcommand)]
enum StakeCmd {
    /// Lock AMOUNT of the balance as stake.
    Add {
        #[command(flatten)]
        tx: TxArgs,
        #[arg(long)]
        amount: String,
    },
    /// Return AMOUNT of stake to the balance (after the lock period since the last change).
    Remove {
        #[command(flatten)]
        tx: TxArgs,
        #[arg(long)]
        amount: String,
    },
    /// An account's stake, its unlock height and its votes.
    Show { address: String },
}

#[derive(Subcommand)]
enum BpCmd {
    /// Register the key as a block-producer candidate reachable at a p2p multiaddr.
    Register {
        #[command(flatten)]
        tx: TxArgs,
        #[arg(long)]
        p2p: String,
    },
    /// The producer set (of the next block, or of --height) and the candidates with their votes.
    List {
        #[arg(long)]
        height: Option<u64>,
    },
}

#[derive(Subcommand)]
enum RaftCmd {
    /// This node's Raft member: role, term, leader, voters, commit and applied index.
    Status,
    /// Make a node a voter: its node key (hex, `aergo-node`'s node_info shows it) and p2p address.
    AddVoter {
        #[command(flatten)]
        tx: TxArgs,
        node_key: String,
        address: String,
    },
    /// Stop counting a node as a voter.
    RemoveVoter {
        #[command(flatten)]
        tx: TxArgs,
        node_key: String,
    },
    /// Ask the leader to hand leadership to a voter.
    TransferLeader {
        #[command(flatten)]
        tx: TxArgs,
        node_key: String,
    },
}

#[derive(Subcommand)]
enum RepoCmd {
    /// Each hosted repository: chain id, consensus, height, last final height, peers, this
    /// node's role and health.
    List,
    /// Host a repository on the running node: it opens at once, nothing else stops.
    Add {
        name: String,
        /// Its genesis file.
        #[arg(long)]
        genesis: PathBuf,
        /// Its settings (repo.toml: [p2p], [producer], [mempool], [admission], [storage],
        /// [branches]).
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Stop hosting a repository; its data stays unless --delete-data.
    Remove {
        name: String,
        #[arg(long)]
        delete_data: bool,
    },
    /// A private repository's members (with --repo; sent by an admin member's --key).
    #[command(subcommand)]
    Member(MemberCmd),
    /// A private repository's node allowlist (with --repo; sent by an admin member's --key).
    #[command(subcommand)]
    Node(NodeCmd),
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Make an account a member with a role: read, write or admin.
    Set {
        #[command(flatten)]
        tx: TxArgs,
        address: String,
        role: String,
    },
    /// Take a member's role away.
    Remove {
        #[command(flatten)]
        tx: TxArgs,
        address: String,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Let a node (its node key, hex) reachable at a p2p address connect.
    Allow {
        #[command(flatten)]
        tx: TxArgs,
        node_key: String,
        address: String,
    },
    /// Refuse a node from now on (it is disconnected).
    Deny {
        #[command(flatten)]
        tx: TxArgs,
        node_key: String,
    },
}

/// The repository a `--rpc` URL names (`…/repo/NAME`).
fn repo_of_url(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("/repo/")?;
    Some(rest.trim_end_matches('/').to_string())
}

fn repo_line(r: &aergo_api::RepositoryView) -> String {
    format!(
        "{:<16} {:<20} {:<5} height {:>8}  final {:>8}  peers {:>3}  {:<9} {}{}",
        r.name,
        r.chain_id,
        r.consensus,
        r.height,
        r.lib_height,
        r.peers,
        r.role,
        r.health,
        r.reason.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
    )
}

fn node_key_arg(text: &str) -> anyhow::Result<aergo_primitives::types::PublicKey> {
    let bytes: [u8; 32] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("node key {text:?} is not 32 bytes of hex"))?;
    Ok(aergo_primitives::types::PublicKey(bytes))
}

#[derive(Subcommand)]
enum BranchCmd {
    /// The branches made on main, then those made on the branches this node holds.
    List,
    /// Make a branch at a final block: --from main (its last final block), main@HEIGHT, or a tag.
    Create {
        #[command(flatten)]
        tx: TxArgs,
        name: String,
        #[arg(long, default_value = "main")]
        from: String,
        /// A producer's hex public key (repeat for several; default: the key signing this).
        #[arg(long = "producer")]
        producers: Vec<String>,
        /// An account that may merge the branch besides its creator (repeatable).
        #[arg(long = "merger")]
        mergers: Vec<String>,
        /// A private branch: only the member nodes hold its blocks, none are gossiped, and a
        /// merge publishes only the transactions it replays (docs/branches.md).
        #[arg(long, requires = "members")]
        private: bool,
        /// A member node's identity key, hex (`aergo node-info` shows a node's): repeat for
        /// each node that may hold the private branch, its producers' nodes among them.
        #[arg(long = "member", requires = "private")]
        members: Vec<String>,
    },
    /// One branch's record, and whether this node holds it.
    Show { name: String },
    /// Hold a branch on this node from now on (kept across restarts): it opens once the block
    /// holding its record is final, and serves reads with --branch NAME.
    Track { name: String },
}

#[derive(Subcommand)]
enum TagCmd {
    /// The tags made on main, then those made on the branches this node holds.
    List,
    /// Name a final block for good: REF is main (its last final block), main@HEIGHT or a tag.
    Create {
        #[command(flatten)]
        tx: TxArgs,
        name: String,
        #[arg(value_name = "REF")]
        reference: String,
    },
}

/// A `merge_private` of `source` after its merge base `base` up to `upto`: its transactions read
/// from this (member) node, carried in the merge. A merge carries what fits in one transaction:
/// when the blocks up to `upto` do not, it goes up to the highest height that does (the rest is
/// for the next merge), and says so.
async fn private_merge(c: &HttpClient, source: &str, base: u64, upto: u64) -> anyhow::Result<Payload> {
    use aergo_primitives::types::{Block, CarriedTx, MAX_TX_BYTES};
    use futures::StreamExt;
    if upto <= base {
        bail!("{source:?} is merged up to its height {base}: nothing to merge up to {upto}");
    }
    // Room for the merge's own fields and signature.
    let room = MAX_TX_BYTES - 1024;
    let (mut carried, mut used, mut reached) = (Vec::new(), 0usize, None);
    // The blocks are read in order, up to FETCH_AHEAD calls in flight (most of a branch's
    // blocks may be empty: one call each would make a long merge slow).
    const FETCH_AHEAD: usize = 16;
    let fetch = |height: u64| async move {
        let raw = c
            .get_raw_block(Some(height), branch_param(source))
            .await?
            .ok_or_else(|| anyhow::anyhow!("{source}@{height} is not on this node"))?;
        let block = Block::decode(&hex::decode(&raw.block)?)
            .map_err(|e| anyhow::anyhow!("{source}@{height}: the node's block does not decode: {e}"))?;
        anyhow::Ok((height, raw.hash, block))
    };
    let mut blocks = futures::stream::iter(base + 1..=upto).map(fetch).buffered(FETCH_AHEAD);
    while let Some(next) = blocks.next().await {
        let (height, hash, block) = next?;
        let txs: Vec<CarriedTx> =
            block.transactions.iter().map(|tx| CarriedTx { height, tx: tx.encode() }).collect();
        // Borsh: each entry is its height, a length and the bytes.
        let size: usize = txs.iter().map(|t| t.tx.len() + 12).sum();
        if used + size > room {
            break;
        }
        used += size;
        carried.extend(txs);
        reached = Some((height, hash));
    }
    let Some((reached, upto_hash)) = reached else {
        bail!("the transactions of {source}@{} alone are more than a merge carries ({room} bytes)", base + 1);
    };
    if reached < upto {
        eprintln!("note: a merge carries at most {room} bytes of transactions: merging up to {source}@{reached}, merge again for the rest");
    }
    Ok(Payload::MergePrivate { source: source.to_string(), upto: reached, upto_hash, carried })
}

/// The (branch, height) a REF names: a branch (its last final block), `BRANCH@HEIGHT`, or a tag.
/// A branch other than `main` must be one the node holds.
async fn resolve_ref(c: &HttpClient, reference: &str) -> anyhow::Result<(String, u64)> {
    use aergo_primitives::types::MAIN_BRANCH;
    let (name, at) = match reference.split_once('@') {
        Some((n, h)) => {
            (n, Some(h.parse::<u64>().map_err(|_| anyhow::anyhow!("{reference}: {h:?} is not a height"))?))
        }
        None => (reference, None),
    };
    if name == MAIN_BRANCH {
        let lib = c.chain_info(None).await?.lib_height;
        return Ok((name.to_string(), at.unwrap_or(lib)));
    }
    if let Ok(b) = c.get_branch(name.to_string()).await {
        if at.is_none() {
            if let Ok(t) = c.get_tag(name.to_string()).await {
                bail!(
                    "{reference} names both a branch and a tag ({}@{}): write {name}@HEIGHT",
                    t.branch,
                    t.height
                );
            }
        }
        return match c.chain_info(Some(name.to_string())).await {
            Ok(i) => Ok((name.to_string(), at.unwrap_or(i.lib_height))),
            Err(e) => bail!("{reference}: {}", rpc_message(&e, &b.name)),
        };
    }
    if at.is_some() {
        bail!("{reference}: no branch {name:?} on this chain (see `aergo branch list`)");
    }
    match c.get_tag(name.to_string()).await {
        Ok(t) => Ok((t.branch, t.height)),
        Err(_) => bail!("{reference} is neither a branch, BRANCH@HEIGHT nor a tag (see `aergo branch list`, `aergo tag list`)"),
    }
}

/// An RPC error's message alone (the server's words), or the error as it is.
fn rpc_message(e: &jsonrpsee::core::ClientError, _about: &str) -> String {
    match e {
        jsonrpsee::core::ClientError::Call(obj) => obj.message().to_string(),
        other => other.to_string(),
    }
}

/// `None` for `main` (the RPC's default), else the branch's name.
fn branch_param(branch: &str) -> Option<String> {
    (branch != aergo_primitives::types::MAIN_BRANCH).then(|| branch.to_string())
}

/// The (branch, height) of a read: `--at REF`, else `--branch` and the height given (or the head).
async fn read_at(
    rpc: &str,
    branch: &str,
    height: Option<u64>,
    at: Option<&str>,
) -> anyhow::Result<(Option<String>, Option<u64>)> {
    match at {
        Some(reference) => {
            let (b, h) = resolve_ref(&client(rpc)?, reference).await?;
            Ok((branch_param(&b), Some(h)))
        }
        None => Ok((branch_param(branch), height)),
    }
}

fn branch_text(b: &aergo_api::BranchView) -> String {
    let base = b.base_hash.map(|h| format!(" ({h})")).unwrap_or_default();
    let mut s = format!(
        "branch {}
  from {}@{}{base}
  created by {} at {}@{}{}",
        b.name,
        b.parent,
        b.base_height,
        b.creator,
        b.parent,
        b.created_at,
        if b.final_record { "" } else { " (not final yet)" }
    );
    b.producers.iter().for_each(|p| {
        s.push_str(&format!(
            "
  producer {p}"
        ))
    });
    b.mergers.iter().for_each(|m| {
        s.push_str(&format!(
            "
  merger {m}"
        ))
    });
    match (b.tracked, b.head_height, &b.waiting) {
        (true, Some(head), _) => s.push_str(&format!(
            "
  held here: head {head}, final {}",
            b.lib_height.unwrap_or(0)
        )),
        (true, None, Some(why)) => s.push_str(&format!(
            "
  tracked here, not open yet: {why}"
        )),
        _ => s.push_str(
            "
  not tracked by this node",
        ),
    }
    s
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Generate a key and write it encrypted with a password.
    New {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Show the address in a key file.
    Show { file: PathBuf },
}

fn password(file: Option<&Path>, confirm: bool) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(p) = std::env::var("AERGO_PASSWORD") {
        return Ok(p);
    }
    let p = rpassword::prompt_password("password: ").context("reading the password from the terminal")?;
    if confirm {
        let again = rpassword::prompt_password("repeat password: ")?;
        if again != p {
            bail!("the passwords differ");
        }
    }
    Ok(p)
}

fn load_key(path: &Path, password_file: Option<&Path>) -> anyhow::Result<Keypair> {
    let file = KeyFile::read(path)?;
    let pass = if file.is_encrypted() { Some(password(password_file, false)?) } else { None };
    Ok(file.unlock(pass.as_deref())?)
}

fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce(&T) -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text(value));
    }
    Ok(())
}

/// The node's RPC client; requests to a private repository are signed by the member key
/// ([`SIGNER`]).
type HttpClient = jsonrpsee::http_client::HttpClient<
    jsonrpsee::http_client::RpcLogger<jsonrpsee::http_client::RpcService<Signing<HttpBackend>>>,
>;

/// Who signs requests to a private repository (docs/repositories.md, "Access control"): the
/// `--member-key`, else a transaction command's `--key`; and the repository's name.
static SIGNER: std::sync::OnceLock<(Keypair, String)> = std::sync::OnceLock::new();

/// Adds `X-Aergo-Auth` over each request's body when there is a [`SIGNER`].
#[derive(Clone)]
struct Signing<S>(S);

impl<S> tower::Service<jsonrpsee::http_client::HttpRequest> for Signing<S>
where
    S: tower::Service<jsonrpsee::http_client::HttpRequest> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: jsonrpsee::http_client::HttpRequest) -> Self::Future {
        use http_body_util::BodyExt;
        let Some((key, repo)) = SIGNER.get() else { return Box::pin(self.0.call(req)) };
        let mut inner = self.0.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            // The client's bodies are whole strings: reading one cannot fail.
            let bytes = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            let value = aergo_api::auth::header_value(key, repo, aergo_primitives::clock::now_ms(), &bytes);
            if let Ok(v) = value.parse() {
                parts.headers.insert(aergo_api::auth::HEADER, v);
            }
            inner.call(jsonrpsee::http_client::HttpRequest::from_parts(parts, bytes.into())).await
        })
    }
}

fn client(url: &str) -> anyhow::Result<HttpClient> {
    HttpClientBuilder::default()
        .request_timeout(Duration::from_secs(30))
        .set_http_middleware(tower::ServiceBuilder::new().layer_fn(Signing))
        .build(url)
        .with_context(|| format!("bad --rpc URL {url}"))
}

async fn wait_receipt(c: &HttpClient, hash: &str, branch: &str) -> anyhow::Result<aergo_api::ReceiptView> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = c.get_receipt(hash.to_string(), branch_param(branch)).await? {
            return Ok(r);
        }
        if std::time::Instant::now() > deadline {
            bail!("no receipt for {hash} after 60 s; it may still be in the pool (aergo tx {hash})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Signs and sends a transaction from `tx.key`; prints its pool position, or with `--wait` its receipt.
async fn submit(
    rpc: &str,
    branch: &str,
    json: bool,
    tx: &TxArgs,
    recipient: Option<Address>,
    amount: u128,
    payload: Payload,
) -> anyhow::Result<()> {
    let key = load_key(&tx.key, tx.password_file.as_deref())?;
    // A private repository's requests are signed by the sender when no member key was given.
    if let Some(repo) = repo_of_url(rpc) {
        let _ = SIGNER.set((key.clone(), repo));
    }
    // A contract call's fee, and a three-way merge's, is its gas limit.
    let gas_limited = payload.is_contract()
        || matches!(&payload, Payload::Merge { strategy, .. }
            if *strategy != aergo_primitives::types::MergeStrategy::Replay);
    let default_fee = if gas_limited { "2000000" } else { "0" };
    let fee = amount_string::parse(tx.fee.as_deref().unwrap_or(default_fee)).map_err(anyhow::Error::msg)?;
    let c = client(rpc)?;
    if let Some(why) = aergo_primitives::refs::name_problem(branch, aergo_primitives::types::MAIN_BRANCH)
        .filter(|_| branch != aergo_primitives::types::MAIN_BRANCH)
    {
        bail!("--branch: {why}");
    }
    let info = c.chain_info(None).await?;
    // The nonce is the sender's on the branch the transaction is for.
    let nonce = match tx.nonce {
        Some(n) => n,
        None => c.get_account(key.address().to_string(), None, branch_param(branch)).await?.pending_nonce,
    };
    let signed = key.sign_tx(TxBody {
        version: TxBody::version_for(branch),
        chain_id: info.chain_id,
        branch: branch.to_string(),
        nonce,
        sender: key.public(),
        recipient: recipient.unwrap_or_else(|| key.address()),
        amount,
        fee,
        payload,
    });
    deliver(&c, json, &signed, tx.estimate, tx.wait, branch).await
}

/// Sends a signed transaction (or, with `estimate`, asks what it would do) and prints the answer;
/// with `wait`, its receipt. Exit status 2 when it failed (or would).
async fn deliver(
    c: &HttpClient,
    json: bool,
    signed: &aergo_primitives::types::Transaction,
    estimate: bool,
    wait: bool,
    branch: &str,
) -> anyhow::Result<()> {
    let contract = match &signed.body.payload {
        Payload::Deploy { .. } => {
            Some(aergo_primitives::types::contract_address(&signed.sender(), signed.body.nonce))
        }
        _ => None,
    };
    if estimate {
        let e = c.estimate_gas(hex::encode(signed.encode())).await?;
        print(json, &e, |e| {
            let mut t = format!(
                "would be {}{}\nfee {}",
                e.status,
                e.error.as_deref().map(|x| format!(" ({x})")).unwrap_or_default(),
                e.fee
            );
            if let Some(result) = &e.result {
                t.push('\n');
                t.push_str(&table(result));
            }
            for ev in &e.events {
                t.push_str(&format!("\n{}", event_line(ev)));
            }
            t
        })?;
        if e.status != "success" {
            std::process::exit(2);
        }
        return Ok(());
    }
    let sent = c.send_tx(hex::encode(signed.encode())).await?;
    let mut v = serde_json::json!({ "hash": sent.hash, "pool_seq": sent.pool_seq });
    let mut text = format!("tx {}\npool position {}", sent.hash, sent.pool_seq);
    if let Some(a) = contract {
        v["contract"] = serde_json::json!(a);
        text = format!("tx {}\ncontract {a}\npool position {}", sent.hash, sent.pool_seq);
    }
    // A node that does not produce the chain forwarded it: the producer's answer.
    if let Some(peer) = &sent.answered_by {
        v["answered_by"] = serde_json::json!(peer);
        text.push_str(&format!(" (answered by producer {peer})"));
    }
    if !wait {
        return print(json, &v, |_| text);
    }
    let r = wait_receipt(c, &sent.hash.to_hex(), branch).await?;
    v["receipt"] = serde_json::to_value(&r)?;
    print(json, &v, |_| {
        let mut t = format!(
            "{text}\nincluded in block {} ({}): {}{}\nfee {}",
            r.block_height,
            r.block_hash,
            r.status,
            r.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            r.fee
        );
        if let Some(result) = &r.result {
            t.push('\n');
            t.push_str(&table(result));
        }
        t
    })?;
    if r.status != "success" {
        std::process::exit(2);
    }
    Ok(())
}

/// A diff as text: a line per entry, marked `-` (changed on REF1's side since the merge base),
/// `+` (REF2's) or `~` (both).
fn diff_text(v: &aergo_api::DiffView) -> String {
    use aergo_api::{AccountSide, DiffEntry};
    let mark = |side: &str| match side {
        "from" => '-',
        "to" => '+',
        _ => '~',
    };
    let account = |a: &Option<AccountSide>| {
        a.as_ref().map_or("none".to_string(), |a| format!("balance {} nonce {}", a.balance, a.nonce))
    };
    let row = |r: &Option<serde_json::Map<String, serde_json::Value>>| {
        r.as_ref().map_or("none".to_string(), |r| serde_json::Value::Object(r.clone()).to_string())
    };
    let mut s = format!(
        "diff {}@{} {}@{} (merge base {}@{})",
        v.from.branch, v.from.height, v.to.branch, v.to.height, v.base.branch, v.base.height
    );
    for e in &v.entries {
        let line = match e {
            DiffEntry::Account { address, side, from, to } => {
                format!("{} account {address}: {} → {}", mark(side), account(from), account(to))
            }
            DiffEntry::Row { contract, table, key, side, from, to } => {
                let key: Vec<String> = key.iter().map(cell).collect();
                format!(
                    "{} row {contract} {table} ({}): {} → {}",
                    mark(side),
                    key.join(", "),
                    row(from),
                    row(to)
                )
            }
            DiffEntry::Contract { contract, side, deployed_in } => {
                format!("{} contract {contract}: deployed on the {deployed_in} side only", mark(side))
            }
            DiffEntry::Other { key, side } => format!("{} {key}", mark(side)),
        };
        s.push('\n');
        s.push_str(&line);
    }
    if v.entries.is_empty() {
        s.push_str("\nno differences");
    }
    if v.truncated {
        s.push_str("\n… more entries differ (--limit)");
    }
    s
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows as a text table: a header, a rule, the rows (numbers right-aligned), and the row count.
fn table(q: &aergo_api::QueryView) -> String {
    let cells: Vec<Vec<String>> = q.rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let mut widths: Vec<usize> = q.columns.iter().map(|c| c.chars().count()).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let numeric: Vec<bool> = (0..q.columns.len())
        .map(|i| {
            !q.rows.is_empty()
                && q.rows.iter().all(|r| {
                    matches!(r.get(i), Some(serde_json::Value::Number(_)) | Some(serde_json::Value::Null))
                })
        })
        .collect();
    let line = |vals: &[String]| -> String {
        vals.iter()
            .enumerate()
            .map(|(i, v)| {
                let w = widths.get(i).copied().unwrap_or(0);
                if numeric.get(i) == Some(&true) {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out =
        vec![line(&q.columns), widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-")];
    out.extend(cells.iter().map(|r| line(r)));
    out.push(format!("({} row{})", q.rows.len(), if q.rows.len() == 1 { "" } else { "s" }));
    out.join("\n")
}

fn show_block(json: bool, block: Option<aergo_api::BlockView>, asked: Option<String>) -> anyhow::Result<()> {
    match block {
        Some(b) => print(json, &b, |b| {
            let h = &b.header;
            let mut s = format!(
                "block {} {}\n  branch {}\n  time {} ms\n  producer {}\n  previous {}\n  state root {}\n  {} transactions",
                b.height, b.hash, h.branch, h.timestamp_ms, h.producer, h.prev_hash, h.state_root, h.tx_count
            );
            match &b.transactions {
                BlockTxs::Hashes(hs) => hs.iter().for_each(|x| s.push_str(&format!("\n    {x}"))),
                BlockTxs::Full(ts) => ts.iter().for_each(|t| {
                    s.push_str(&format!("\n    {} {} → {} {}", t.hash, t.sender, t.recipient, t.amount))
                }),
            }
            s
        }),
        None => bail!("no block at {}", asked.unwrap_or_else(|| "the head".into())),
    }
}

/// The words of an error for a person: a node's answer as its message (with the reason of a
/// refused transaction), anything else with its causes.
fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<jsonrpsee::core::ClientError>() {
        Some(jsonrpsee::core::ClientError::Call(obj)) => {
            let reason = obj
                .data()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d.get()).ok())
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(String::from));
            match reason {
                Some(r) => format!("{} ({r}, code {})", obj.message(), obj.code()),
                None => format!("{} (code {})", obj.message(), obj.code()),
            }
        }
        _ => format!("{e:#}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let repo = cli.repo.clone();
    if let Err(e) = run(cli).await {
        let mut text = error_text(&e);
        // The node answers a path it has no repository for with 404 (its body says so, but the
        // HTTP client keeps only the status).
        if let (Some(name), true) = (&repo, text.contains("`404`")) {
            text = format!("no repository {name:?} on this node (aergo repo list shows those it hosts)");
        }
        if let (Some(name), true) = (&repo, text.contains("`403`")) {
            text = format!(
                "access denied (code -32020): {name:?} is private and takes requests signed by a member \
                 (--member-key FILE)"
            );
        }
        eprintln!("error: {text}");
        std::process::exit(1);
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    // The node's own path answers for its repositories; `--repo` sends the rest to one.
    let root = cli.rpc.clone();
    if let Some(name) = &cli.repo {
        if matches!(cli.command, Command::Repo(RepoCmd::List | RepoCmd::Add { .. } | RepoCmd::Remove { .. }))
        {
            bail!("--repo names a repository to work on; `aergo repo` works on the node itself");
        }
        cli.rpc = format!("{}/repo/{name}", cli.rpc.trim_end_matches('/'));
        let on_box = std::path::Path::new(
            &std::env::var_os("AERGO_KEYS_DIR").unwrap_or_else(|| "/var/lib/aergo/keys".into()),
        )
        .join(format!("member-{name}.key"));
        let member_key = cli.member_key.clone().or_else(|| on_box.exists().then_some(on_box));
        if let Some(path) = &member_key {
            let key = load_key(path, None).with_context(|| format!("the member key {}", path.display()))?;
            let _ = SIGNER.set((key, name.clone()));
        }
    }
    if let (None, Some(path)) = (&cli.repo, &cli.member_key) {
        let key = load_key(path, None).with_context(|| format!("the member key {}", path.display()))?;
        let _ = SIGNER.set((key, String::new()));
    }
    match cli.command {
        Command::Repo(RepoCmd::List) => {
            let list = client(&root)?.repositories().await?;
            print(json, &list, |l| {
                if l.is_empty() {
                    "no repository is hosted besides the public chain".into()
                } else {
                    l.iter().map(repo_line).collect::<Vec<_>>().join("\n")
                }
            })?;
        }
        Command::Repo(RepoCmd::Add { name, genesis, settings }) => {
            let read =
                |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
            let request = aergo_api::AddRepository {
                name,
                genesis: read(&genesis)?,
                settings: settings.as_deref().map(read).transpose()?,
            };
            let added = client(&root)?.admin_add_repository(request).await?;
            print(json, &added, repo_line)?;
        }
        Command::Repo(RepoCmd::Member(cmd)) => {
            let (tx, change) = match cmd {
                MemberCmd::Set { tx, address, role } => {
                    let role = aergo_primitives::types::MemberRole::parse(&role)
                        .ok_or_else(|| anyhow::anyhow!("role {role:?}: read, write or admin"))?;
                    (tx, RepoAdmin::SetMember { member: Address::parse(&address)?, role })
                }
                MemberCmd::Remove { tx, address } => {
                    (tx, RepoAdmin::RemoveMember { member: Address::parse(&address)? })
                }
            };
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::RepoAdmin(change)).await?;
        }
        Command::Repo(RepoCmd::Node(cmd)) => {
            let (tx, change) = match cmd {
                NodeCmd::Allow { tx, node_key, address } => {
                    address
                        .parse::<multiaddr::Multiaddr>()
                        .map_err(|e| anyhow::anyhow!("address {address:?}: {e}"))?;
                    (tx, RepoAdmin::AllowNode { node_key: node_key_arg(&node_key)?, address })
                }
                NodeCmd::Deny { tx, node_key } => {
                    (tx, RepoAdmin::DenyNode { node_key: node_key_arg(&node_key)? })
                }
            };
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::RepoAdmin(change)).await?;
        }
        Command::Repo(RepoCmd::Remove { name, delete_data }) => {
            client(&root)?.admin_remove_repository(name.clone(), Some(!delete_data)).await?;
            let v = serde_json::json!({ "removed": name, "data_deleted": delete_data });
            print(json, &v, |_| {
                format!("repository {name} removed{}", if delete_data { " and its data deleted" } else { "" })
            })?;
        }
        Command::Account(AccountCmd::New { out, password_file }) => {
            let key = Keypair::generate();
            let pass = password(password_file.as_deref(), true)?;
            if pass.len() < 8 {
                bail!("choose a password of at least 8 characters");
            }
            KeyFile::write_encrypted(&out, &key, &pass)?;
            // The public key is what a genesis names a node by (a Raft voter's or an allowed
            // node's `node_key`) when this key is to be a box's identity.
            let public_key = hex::encode(key.public().0);
            let v = serde_json::json!({
                "address": key.address(),
                "public_key": public_key,
                "file": out.display().to_string(),
            });
            print(json, &v, |_| {
                format!("address {}\npublic key {public_key}\nwritten to {}", key.address(), out.display())
            })?;
        }
        Command::Account(AccountCmd::Show { file }) => {
            let f = KeyFile::read(&file)?;
            let v = serde_json::json!({ "address": f.address(), "encrypted": f.is_encrypted() });
            print(json, &v, |_| {
                format!(
                    "address {}\n{}",
                    f.address(),
                    if f.is_encrypted() { "encrypted" } else { "plain (devnet key)" }
                )
            })?;
        }
        Command::Balance { address, height, at } => {
            Address::parse(&address)?;
            let (branch, height) = read_at(&cli.rpc, &cli.branch, height, at.as_deref()).await?;
            let a = client(&cli.rpc)?.get_account(address, height, branch).await?;
            print(json, &a, |a| {
                format!("{} at height {}: balance {} nonce {}", a.address, a.height, a.balance, a.nonce)
            })?;
        }
        Command::Proof(ProofCmd::Account { address, height, at }) => {
            Address::parse(&address)?;
            let (branch, height) = read_at(&cli.rpc, &cli.branch, height, at.as_deref()).await?;
            let doc = client(&cli.rpc)?.get_account_proof(address, height, branch).await?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Command::Proof(ProofCmd::Row { contract, table, key, height, at }) => {
            Address::parse(&contract)?;
            let (branch, height) = read_at(&cli.rpc, &cli.branch, height, at.as_deref()).await?;
            let key = key.iter().map(|k| aergo_sql::json::to_json(&aergo_sql::json::from_cli(k))).collect();
            let doc = client(&cli.rpc)?.get_row_proof(contract, table, key, height, branch).await?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Command::VerifyProof { file, header } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let doc: aergo_api::StateProofView = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a proof document", file.display()))?;
            let header_text = if header.trim_start().starts_with('{') {
                header
            } else {
                std::fs::read_to_string(&header).with_context(|| format!("reading {header}"))?
            };
            let trusted: aergo_api::ProvenBlock =
                serde_json::from_str(&header_text).context("the header is not {hash, header} JSON")?;
            match proof::verify(&doc, &trusted) {
                Ok(what) => {
                    let v = serde_json::json!({ "verified": true, "what": what });
                    print(json, &v, |_| format!("verified: {what}"))?;
                }
                Err(e) => {
                    let v = serde_json::json!({ "verified": false, "check": e.check, "error": e.why });
                    print(json, &v, |_| format!("not verified: {}: {}", e.check, e.why))?;
                    std::process::exit(1);
                }
            }
        }
        Command::Send { tx, to, amount } => {
            let recipient = Address::parse(&to)?;
            let amount = amount_string::parse(&amount).map_err(anyhow::Error::msg)?;
            submit(&cli.rpc, &cli.branch, json, &tx, Some(recipient), amount, Payload::Transfer).await?;
        }
        Command::Stake(StakeCmd::Add { tx, amount }) => {
            let amount = amount_string::parse(&amount).map_err(anyhow::Error::msg)?;
            submit(&cli.rpc, &cli.branch, json, &tx, None, amount, Payload::Stake).await?;
        }
        Command::Stake(StakeCmd::Remove { tx, amount }) => {
            let amount = amount_string::parse(&amount).map_err(anyhow::Error::msg)?;
            submit(&cli.rpc, &cli.branch, json, &tx, None, amount, Payload::Unstake).await?;
        }
        Command::Stake(StakeCmd::Show { address }) => {
            Address::parse(&address)?;
            let v = client(&cli.rpc)?.get_stake(address).await?;
            print(json, &v, |v| {
                let votes: Vec<String> = v.votes.iter().map(|a| a.to_string()).collect();
                format!(
                    "{}: staked {} (since height {}, unlocks at {})\n  votes: {}",
                    v.address,
                    v.staked,
                    v.since,
                    v.unlocks_at,
                    if votes.is_empty() { "none".to_string() } else { votes.join(", ") }
                )
            })?;
        }
        Command::Vote { tx, candidates } => {
            let listed = client(&cli.rpc)?.producers(None).await?.candidates;
            let mut keys = Vec::new();
            for c in &candidates {
                let key = match listed.iter().find(|x| x.address.to_string() == *c || x.public_key == *c) {
                    Some(x) => x.public_key.clone(),
                    None if c.len() == 64 => c.clone(),
                    None => bail!("{c} is not a registered candidate (see `aergo bp list`)"),
                };
                let bytes: [u8; 32] = hex::decode(&key)?
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("{c}: a public key is 32 bytes"))?;
                keys.push(aergo_primitives::types::PublicKey(bytes));
            }
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::Vote { candidates: keys }).await?;
        }
        Command::Contract(ContractCmd::Deploy { tx, file, amount }) => {
            let sql =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            // Refused scripts are reported here, with line and column, before anything is signed.
            if let Err(e) = aergo_sql::compile(&sql) {
                bail!("{}: {e}", file.display());
            }
            let amount = amount_string::parse(&amount).map_err(anyhow::Error::msg)?;
            submit(&cli.rpc, &cli.branch, json, &tx, None, amount, Payload::Deploy { sql }).await?;
        }
        Command::Contract(ContractCmd::Call { tx, address, function, args, amount }) => {
            let contract = Address::parse(&address)?;
            let args = args.iter().map(|a| aergo_primitives::value::json::from_cli(a)).collect();
            let amount = amount_string::parse(&amount).map_err(anyhow::Error::msg)?;
            submit(
                &cli.rpc,
                &cli.branch,
                json,
                &tx,
                None,
                amount,
                Payload::Call { contract, function, args },
            )
            .await?;
        }
        Command::Contract(ContractCmd::Show { address, height, source }) => {
            Address::parse(&address)?;
            let c = client(&cli.rpc)?.get_contract(address, height, branch_param(&cli.branch)).await?;
            print(json, &c, |c| {
                let mut t = format!("contract {} at height {} (code {})\n", c.address, c.height, c.code_hash);
                for tb in &c.tables {
                    t += &format!(
                        "table {} ({}) primary key ({})\n",
                        tb.name,
                        tb.columns.join(", "),
                        tb.primary_key.join(", ")
                    );
                    for ix in &tb.indexes {
                        t += &format!("  index {ix}\n");
                    }
                }
                for f in &c.functions {
                    t += &format!("function {}({}) returns {}\n", f.name, f.params.join(", "), f.returns);
                    t += &format!(
                        "  reads  {}\n",
                        if f.reads.is_empty() { "nothing".into() } else { f.reads.join("; ") }
                    );
                    t += &format!(
                        "  writes {}\n",
                        if f.writes.is_empty() { "nothing".into() } else { f.writes.join("; ") }
                    );
                    if f.moves_native {
                        t += "  moves native coins out of the contract\n";
                    }
                }
                if source {
                    t += "\n";
                    t += &c.script;
                }
                t.trim_end().to_string()
            })?;
        }
        Command::Query { contract, sql, function, args, height, at } => {
            let (branch, height) = read_at(&cli.rpc, &cli.branch, height, at.as_deref()).await?;
            let contract = Address::parse(&contract)?;
            if sql.is_none() && function.is_none() {
                bail!("give a SELECT statement or --function NAME");
            }
            let args = args
                .iter()
                .map(|a| aergo_primitives::value::json::to_json(&aergo_primitives::value::json::from_cli(a)))
                .collect();
            let req = aergo_api::QueryRequest { contract, sql, function, args, height, branch };
            let q = client(&cli.rpc)?.query(req).await?;
            print(json, &q, table)?;
        }
        Command::Raft(RaftCmd::Status) => {
            let info = client(&cli.rpc)?.chain_info(None).await?;
            let Some(raft) = info.raft else { bail!("this chain is agreed by {}, not Raft", info.consensus) };
            print(json, &raft, |r| {
                format!(
                    "member {} ({}), term {}\nleader: {}\nvoters: {}\n{}\ncommit index {}, applied {}",
                    r.id,
                    r.role,
                    r.term,
                    r.leader.as_deref().unwrap_or("none known"),
                    r.voters.len(),
                    r.voters.iter().map(|v| format!("  {v}")).collect::<Vec<_>>().join("\n"),
                    r.commit_index,
                    r.applied_index
                )
            })?;
        }
        Command::Raft(RaftCmd::AddVoter { tx, node_key, address }) => {
            address
                .parse::<multiaddr::Multiaddr>()
                .map_err(|e| anyhow::anyhow!("address {address:?}: {e}"))?;
            let change = RaftAdmin::AddVoter { node_key: node_key_arg(&node_key)?, address };
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::RaftAdmin(change)).await?;
        }
        Command::Raft(RaftCmd::RemoveVoter { tx, node_key }) => {
            let change = RaftAdmin::RemoveVoter { node_key: node_key_arg(&node_key)? };
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::RaftAdmin(change)).await?;
        }
        Command::Raft(RaftCmd::TransferLeader { tx, node_key }) => {
            let change = RaftAdmin::TransferLeader { node_key: node_key_arg(&node_key)? };
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::RaftAdmin(change)).await?;
        }
        Command::Bp(BpCmd::Register { tx, p2p }) => {
            p2p.parse::<multiaddr::Multiaddr>().map_err(|e| anyhow::anyhow!("--p2p {p2p:?}: {e}"))?;
            submit(&cli.rpc, &cli.branch, json, &tx, None, 0, Payload::RegisterBp { p2p_address: p2p })
                .await?;
        }
        Command::Branch(BranchCmd::List) => {
            let v = client(&cli.rpc)?.get_branches().await?;
            print(json, &v, |v| {
                if v.is_empty() {
                    return "no branches: main only".to_string();
                }
                v.iter().map(branch_text).collect::<Vec<_>>().join("\n")
            })?;
        }
        Command::Branch(BranchCmd::Show { name }) => {
            let v = client(&cli.rpc)?.get_branch(name).await?;
            print(json, &v, branch_text)?;
        }
        Command::Branch(BranchCmd::Track { name }) => {
            if let Some(why) =
                aergo_primitives::refs::name_problem(&name, aergo_primitives::types::MAIN_BRANCH)
            {
                bail!("{why}");
            }
            let v = client(&cli.rpc)?.track_branch(name).await?;
            print(json, &v, branch_text)?;
        }
        Command::Branch(BranchCmd::Create { tx, name, from, producers, mergers, private, members }) => {
            let c = client(&cli.rpc)?;
            let (on, base_height) = resolve_ref(&c, &from).await?;
            if let Some(why) = aergo_primitives::refs::name_problem(&name, &on) {
                bail!("{why}");
            }
            let keys = |list: &[String], flag: &str| {
                list.iter()
                    .map(|p| {
                        let bytes: [u8; 32] = hex::decode(p)
                            .ok()
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| anyhow::anyhow!("--{flag} {p}: a hex public key of 32 bytes"))?;
                        Ok(aergo_primitives::types::PublicKey(bytes))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
            let producers = keys(&producers, "producer")?;
            let mergers = mergers.iter().map(|m| Address::parse(m)).collect::<Result<Vec<_>, _>>()?;
            let payload = match private {
                false => Payload::CreateBranch { name, base_height, producers, mergers },
                true => {
                    let members = keys(&members, "member")?;
                    Payload::CreatePrivateBranch { name, base_height, producers, mergers, members }
                }
            };
            submit(&cli.rpc, &on, json, &tx, None, 0, payload).await?;
        }
        Command::Tag(TagCmd::List) => {
            let v = client(&cli.rpc)?.get_tags().await?;
            print(json, &v, |v| {
                if v.is_empty() {
                    return "no tags".to_string();
                }
                v.iter()
                    .map(|t| {
                        let hash = t.hash.map(|h| format!(" ({h})")).unwrap_or_default();
                        format!("{} → {}@{}{hash}", t.name, t.branch, t.height)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Command::Tag(TagCmd::Create { tx, name, reference }) => {
            let c = client(&cli.rpc)?;
            let (on, height) = resolve_ref(&c, &reference).await?;
            if let Some(why) = aergo_primitives::refs::name_problem(&name, &on) {
                bail!("{why}");
            }
            submit(&cli.rpc, &on, json, &tx, None, 0, Payload::CreateTag { name, height }).await?;
        }
        Command::Bp(BpCmd::List { height }) => {
            let v = client(&cli.rpc)?.producers(height).await?;
            print(json, &v, |v| {
                let mut s = format!(
                    "producers of height {} (epoch {}, next epoch at {}):",
                    v.height, v.epoch, v.next_epoch_height
                );
                v.producers.iter().for_each(|p| s.push_str(&format!("\n  {p}")));
                if !v.next_producers.is_empty() && v.next_producers != v.producers {
                    s.push_str("\nnext epoch:");
                    v.next_producers.iter().for_each(|p| s.push_str(&format!("\n  {p}")));
                }
                s.push_str(&format!("\ncandidates: {}", v.candidates.len()));
                v.candidates.iter().for_each(|c| {
                    s.push_str(&format!("\n  {} votes {} at {}", c.address, c.votes, c.p2p_address))
                });
                s
            })?;
        }
        Command::Tx { hash: Some(hash), cmd: None } => {
            match client(&cli.rpc)?.get_tx(hash.clone(), branch_param(&cli.branch)).await? {
                Some(t) => print(json, &t, |t| {
                    format!(
                        "tx {}\n  {} {} → {}\n  amount {} fee {} nonce {}\n  {}",
                        t.hash,
                        t.kind,
                        t.sender,
                        t.recipient,
                        t.amount,
                        t.fee,
                        t.nonce,
                        match (t.block_height, t.index) {
                            (Some(h), Some(i)) => format!("included in block {h} at index {i}"),
                            _ => "pending in the pool".to_string(),
                        }
                    )
                })?,
                None => bail!("no transaction {hash} on this node"),
            }
        }
        Command::Tx { cmd: None, hash: None } => {
            bail!("give a transaction hash, or `aergo tx sign` / `aergo tx send` (see aergo tx --help)")
        }
        Command::Tx { cmd: Some(TxCmd::Sign { body, key, password_file, offline, out }), .. } => {
            let text = if body.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the body from standard input")?
            } else {
                std::fs::read_to_string(&body).with_context(|| format!("reading {}", body.display()))?
            };
            let mut doc: aergo_api::txjson::TxJson = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a transaction body (docs/dapps.md)", body.display()))?;
            let key = load_key(&key, password_file.as_deref())?;
            if !offline && (doc.chain_id.is_none() || doc.nonce.is_none()) {
                let c = client(&cli.rpc)?;
                if doc.chain_id.is_none() {
                    doc.chain_id = Some(c.chain_info(branch_param(&doc.branch)).await?.chain_id);
                }
                if doc.nonce.is_none() {
                    let account = c.get_account(key.address().to_string(), None, branch_param(&doc.branch));
                    doc.nonce = Some(account.await?.pending_nonce);
                }
            }
            let unsigned = doc.to_body(key.public()).map_err(|e| {
                let hint = if offline && e.ends_with("is missing") {
                    " (--offline: give it in the body)"
                } else {
                    ""
                };
                anyhow::anyhow!("{}: {e}{hint}", body.display())
            })?;
            let signed = key.sign_tx(unsigned);
            let file = aergo_api::txjson::SignedTxFile {
                hash: signed.hash(),
                tx: hex::encode(signed.encode()),
                body: aergo_api::txjson::TxJson::of(&signed.body),
            };
            let text = serde_json::to_string_pretty(&file)? + "\n";
            match out {
                Some(path) => {
                    aergo_primitives::file::write_atomic_mode(&path, text.as_bytes(), 0o644)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("signed {} into {}", file.hash, path.display());
                }
                None => print!("{text}"),
            }
        }
        Command::Tx { cmd: Some(TxCmd::Send { file, wait, estimate }), .. } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let hex_tx = match serde_json::from_str::<aergo_api::txjson::SignedTxFile>(&text) {
                Ok(f) => f.tx,
                Err(_) => text.trim().to_string(),
            };
            let bytes = hex::decode(&hex_tx).map_err(|_| {
                anyhow::anyhow!(
                    "{}: neither a signed transaction file (aergo tx sign) nor hex",
                    file.display()
                )
            })?;
            let signed = aergo_primitives::types::Transaction::decode(&bytes)
                .with_context(|| format!("{}: not a transaction", file.display()))?;
            let branch = signed.body.branch.clone();
            deliver(&client(&cli.rpc)?, json, &signed, estimate, wait, &branch).await?;
        }
        Command::Events { contract, name, args, from, to, limit, follow } => {
            let c = client(&cli.rpc)?;
            let address = Address::parse(&contract)?;
            let mut wanted = serde_json::Map::new();
            for a in &args {
                let Some((k, v)) = a.split_once('=') else { bail!("--arg {a}: NAME=VALUE") };
                let value =
                    serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
                wanted.insert(k.to_string(), value);
            }
            let mut filter = aergo_api::EventFilter {
                contract: address,
                name,
                args: (!wanted.is_empty()).then_some(wanted),
                from,
                to,
                limit: Some(1_000),
                after: None,
                branch: branch_param(&cli.branch),
            };
            let mut shown = 0usize;
            let mut all = Vec::new();
            loop {
                let page = c.get_events(filter.clone()).await?;
                for e in page.events {
                    if limit.is_some_and(|l| shown >= l) {
                        break;
                    }
                    shown += 1;
                    filter.after = Some(format!("{}:{}:{}", e.block_height, e.tx_index, e.event_index));
                    if follow && !json {
                        println!("{}", event_entry_line(&e));
                    } else {
                        all.push(e);
                    }
                }
                if limit.is_some_and(|l| shown >= l) {
                    break;
                }
                match page.next {
                    Some(next) => filter.after = Some(next),
                    None if follow && to.is_none() => {
                        // The index is read again a slot later: from the cursor, nothing twice and no gap.
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    None => break,
                }
                if follow && json {
                    for e in all.drain(..) {
                        println!("{}", serde_json::to_string(&e)?);
                    }
                }
            }
            if !follow {
                print(json, &all, |all| {
                    if all.is_empty() {
                        return "no events".to_string();
                    }
                    all.iter().map(event_entry_line).collect::<Vec<_>>().join("\n")
                })?;
            }
        }
        Command::Receipt { hash } => {
            match client(&cli.rpc)?.get_receipt(hash.clone(), branch_param(&cli.branch)).await? {
                Some(r) => print(json, &r, |r| {
                    let mut text = format!(
                        "tx {}\n  {}{}\n  block {} ({}) index {}\n  fee {}",
                        r.tx_hash,
                        r.status,
                        r.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
                        r.block_height,
                        r.block_hash,
                        r.index,
                        r.fee
                    );
                    for e in &r.events {
                        text.push_str(&format!("\n  {}", event_line(e)));
                    }
                    text
                })?,
                None => bail!("no receipt for {hash} (unknown, or still in the pool)"),
            }
        }
        Command::Block { height: asked, full, at } => {
            let (branch, height) = read_at(&cli.rpc, &cli.branch, asked, at.as_deref()).await?;
            let block = client(&cli.rpc)?.get_block(height, None, Some(full), branch).await?;
            show_block(json, block, at.or(asked.map(|h| h.to_string())))?;
        }
        Command::Merge { tx, source, into, strategy, upto } => {
            let Some(strategy) = aergo_primitives::types::MergeStrategy::parse(&strategy) else {
                bail!("--strategy {strategy}: replay, three-way, ours or theirs");
            };
            let c = client(&cli.rpc)?;
            let record = c.get_branch(source.clone()).await?;
            let target = into.unwrap_or_else(|| record.parent.clone());
            let upto = match upto.or(record.lib_height) {
                Some(h) => h,
                None => bail!(
                    "this node does not hold {source:?}, so it cannot merge it: aergo branch track {source}"
                ),
            };
            let payload = if record.members.is_some() {
                // A member node serves the branch's reads to its creator and mergers: the
                // merger's key signs them (unless --member-key did).
                if SIGNER.get().is_none() {
                    let key = load_key(&tx.key, tx.password_file.as_deref())?;
                    let _ = SIGNER.set((key, repo_of_url(&cli.rpc).unwrap_or_default()));
                }
                if strategy != aergo_primitives::types::MergeStrategy::Replay {
                    bail!("{source:?} is a private branch: it merges by replay (its other nodes cannot read it)");
                }
                private_merge(&c, &source, record.merged_upto.unwrap_or(record.base_height), upto).await?
            } else {
                let block = c
                    .get_block(Some(upto), None, Some(false), branch_param(&source))
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("{source}@{upto} is not on this node"))?;
                Payload::Merge { source, strategy, upto, upto_hash: block.hash }
            };
            submit(&cli.rpc, &target, json, &tx, None, 0, payload).await?;
        }
        Command::Diff { from, to, limit } => {
            let c = client(&cli.rpc)?;
            let point = |(branch, height)| aergo_api::PointView { branch, height };
            let (from, to) = (point(resolve_ref(&c, &from).await?), point(resolve_ref(&c, &to).await?));
            let v = c.diff(from, to, Some(limit)).await?;
            print(json, &v, diff_text)?;
        }
        Command::Log { reference, count } => {
            let c = client(&cli.rpc)?;
            // A bare branch name starts at its head (git's tip); other REFs where they point.
            let head_of = |b: &str| c.chain_info(branch_param(b));
            let (branch, top) = match reference.as_deref() {
                None => (cli.branch.clone(), head_of(&cli.branch).await?.height),
                Some(r) if !r.contains('@') => match head_of(r).await {
                    Ok(info) => (r.to_string(), info.height),
                    Err(_) => resolve_ref(&c, r).await?,
                },
                Some(r) => resolve_ref(&c, r).await?,
            };
            let mut blocks = Vec::new();
            for h in (0..=top).rev().take(count.min(10_000) as usize) {
                match c.get_block(Some(h), None, Some(false), branch_param(&branch)).await? {
                    Some(b) => blocks.push(b),
                    None => break,
                }
            }
            print(json, &blocks, |bs| {
                bs.iter()
                    .map(|b| {
                        let h = &b.header;
                        format!(
                            "{} {} {} by {} {} tx{} at {}",
                            b.height,
                            b.hash,
                            h.branch,
                            h.producer,
                            h.tx_count,
                            if h.tx_count == 1 { "" } else { "s" },
                            h.timestamp_ms
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        }
        Command::Chain => {
            let i = client(&cli.rpc)?.chain_info(branch_param(&cli.branch)).await?;
            print(json, &i, |i| {
                format!(
                    "chain {} branch {}\n  height {} ({})\n  final {}\n  producers {}, slot {} ms\n  pool {} transactions",
                    i.chain_id, i.branch, i.height, i.best_hash, i.lib_height, i.producer_count, i.block_interval_ms, i.mempool_txs
                )
            })?;
        }
        Command::Node => {
            let n = client(&cli.rpc)?.node_info().await?;
            print(json, &n, |n| {
                format!(
                    "aergo-node {}\n  role {}\n  data {}\n  up {} s\n  block log via {}\n  execution cores {:?}",
                    n.version,
                    n.role,
                    n.data_dir,
                    n.uptime_s,
                    if n.block_log_io_uring { "io_uring" } else { "pwrite" },
                    n.exec_cores
                )
            })?;
        }
    }
    Ok(())
}

/// An event as the CLI prints it: `event transfer(sender: "a", amount: 5) of CONTRACT #3`.
fn event_line(e: &aergo_api::EventView) -> String {
    let args: Vec<String> = e.args.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let place = match (e.reverted, e.index) {
        (true, _) => " (reverted)".to_string(),
        (false, Some(i)) => format!(" #{i}"),
        (false, None) => String::new(),
    };
    format!("event {}({}) of {}{place}", e.name, args.join(", "), e.contract)
}

/// An indexed event as the CLI prints it.
fn event_entry_line(e: &aergo_api::EventEntry) -> String {
    let args: Vec<String> = e.args.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(
        "{} tx {} #{}.{}  {}({})",
        e.block_height,
        e.tx_hash,
        e.tx_index,
        e.event_index,
        e.name,
        args.join(", ")
    )
}
