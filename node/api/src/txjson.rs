//! The JSON form of a transaction (`docs/dapps.md`, "The JSON form of a transaction"): what
//! `aergo tx sign` reads and the JavaScript client writes. [`TxJson::to_body`] builds the body it
//! describes; [`TxJson::of`] writes a body back in this form, every default filled in.

use aergo_primitives::types::{
    Address, Amount, CarriedTx, Equivocation, Hash, MemberRole, MergeStrategy, Payload, PublicKey, RaftAdmin,
    RepoAdmin, TxBody, MAIN_BRANCH,
};
use aergo_primitives::value::{Decimal, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One carried transaction of a `merge_private`: its source height and its encoding in hex.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CarriedJson {
    pub height: u64,
    pub tx: String,
}

/// A transaction body in JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxJson {
    /// Absent: the node's (`aergo tx sign` without `--offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    #[serde(default = "main_branch")]
    pub branch: String,
    /// Absent: the sender's next (`aergo tx sign` without `--offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// The sender's public key, hex; the signing key's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The sender's address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Address>,
    #[serde(default = "zero")]
    pub amount: String,
    #[serde(default = "zero")]
    pub fee: String,
    pub payload: PayloadJson,
}

fn main_branch() -> String {
    MAIN_BRANCH.to_string()
}

fn zero() -> String {
    "0".to_string()
}

/// A payload by its kind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PayloadJson {
    // Empty struct variants, not unit ones: serde lets unknown fields through a unit variant of an
    // internally tagged enum.
    Transfer {},
    Stake {},
    Unstake {},
    Vote {
        candidates: Vec<String>,
    },
    RegisterBp {
        p2p_address: String,
    },
    ReportEquivocation {
        /// Hex of the borsh-encoded evidence.
        evidence: String,
    },
    Deploy {
        sql: String,
    },
    Call {
        contract: Address,
        function: String,
        #[serde(default)]
        args: Vec<Json>,
    },
    CreateBranch {
        name: String,
        base_height: u64,
        #[serde(default)]
        producers: Vec<String>,
        #[serde(default)]
        mergers: Vec<Address>,
    },
    CreateTag {
        name: String,
        height: u64,
    },
    Merge {
        source: String,
        strategy: String,
        upto: u64,
        upto_hash: Hash,
    },
    /// A private branch (`docs/branches.md`, "Private branches"): `members` are node keys (hex).
    CreatePrivateBranch {
        name: String,
        base_height: u64,
        #[serde(default)]
        producers: Vec<String>,
        #[serde(default)]
        mergers: Vec<Address>,
        members: Vec<String>,
    },
    /// A replay merge of a private branch with its transactions carried.
    MergePrivate {
        source: String,
        upto: u64,
        upto_hash: Hash,
        carried: Vec<CarriedJson>,
    },
    /// A membership change of a Raft chain: `op` is `add_voter` (with `address`),
    /// `remove_voter` or `transfer_leader`.
    RaftAdmin {
        op: String,
        node_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// A change of a private repository's members or nodes (`docs/repositories.md`): `op` is
    /// `set_member` (`member`, `role`), `remove_member` (`member`), `allow_node` (`node_key`,
    /// `address`) or `deny_node` (`node_key`).
    RepoAdmin {
        op: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<Address>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
}

fn public_key(text: &str, what: &str) -> Result<PublicKey, String> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PublicKey)
        .ok_or_else(|| format!("{what}: {text:?} is not a public key (64 hex digits)"))
}

fn amount(text: &str, what: &str) -> Result<Amount, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: a decimal string of the smallest unit, not {text:?}"));
    }
    text.parse().map_err(|_| format!("{what}: {text} does not fit 128 bits"))
}

/// A call argument, exactly: `null`, a boolean, an integer of 64 bits (a number, or
/// `{"int": "…"}` past 2^53, which JavaScript cannot hold), a string (text), `{"dec": "1.50"}`
/// or `{"bytes": "00ff"}`.
pub fn arg_value(j: &Json, i: usize) -> Result<Value, String> {
    let what = format!("args[{i}]");
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Int(n.as_i64().ok_or_else(|| {
            format!("{what}: {n} is not an integer that fits 64 bits; write a decimal as {{\"dec\": \"…\"}}")
        })?),
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, Json::String(s))) if k == "dec" => {
                let unsigned = s.strip_prefix('-').unwrap_or(s);
                let plain = match unsigned.split_once('.') {
                    Some((int, frac)) => !int.is_empty() && !frac.is_empty(),
                    None => !unsigned.is_empty(),
                };
                match Decimal::parse(s).filter(|_| plain) {
                    Some(d) => Value::Dec(d),
                    None => return Err(format!("{what}: {s:?} is not a decimal (-12.50, at most 38 places)")),
                }
            }
            Some((k, Json::String(s))) if k == "int" => {
                let ok = !s.is_empty() && s.strip_prefix('-').unwrap_or(s).bytes().all(|b| b.is_ascii_digit());
                Value::Int(s.parse().ok().filter(|_| ok).ok_or_else(|| format!("{what}: {s:?} is not a 64-bit integer"))?)
            }
            Some((k, Json::String(s))) if k == "bytes" => {
                Value::Bytes(hex::decode(s).map_err(|_| format!("{what}: {s:?} is not hex"))?)
            }
            _ => {
                return Err(format!(
                    "{what}: an object argument is {{\"int\": \"…\"}}, {{\"dec\": \"…\"}} or {{\"bytes\": \"…\"}}"
                ))
            }
        },
        _ => return Err(format!("{what}: not an AergoSQL value")),
    })
}

/// A call argument in JSON: the inverse of [`arg_value`].
pub fn arg_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        // Integers beyond 2^53 as strings: JavaScript's numbers would round them.
        Value::Int(i) if i.unsigned_abs() < 1 << 53 => Json::from(*i),
        Value::Int(i) => serde_json::json!({ "int": i.to_string() }),
        Value::Text(s) => Json::String(s.clone()),
        Value::Dec(d) => serde_json::json!({ "dec": d.to_string() }),
        Value::Bytes(b) => serde_json::json!({ "bytes": hex::encode(b) }),
    }
}

impl TxJson {
    /// The body this describes, sent by `sender` (which `sender`, when given, must be).
    pub fn to_body(&self, sender: PublicKey) -> Result<TxBody, String> {
        if let Some(given) = &self.sender {
            if public_key(given, "sender")? != sender {
                return Err("sender is not the signing key's public key".into());
            }
        }
        if let Some(why) = aergo_primitives::refs::name_problem(&self.branch, MAIN_BRANCH)
            .filter(|_| self.branch != MAIN_BRANCH)
        {
            return Err(format!("branch {:?}: {why}", self.branch));
        }
        let chain_id = self.chain_id.clone().ok_or("chain_id is missing")?;
        if chain_id.is_empty() || chain_id.len() > aergo_primitives::types::MAX_CHAIN_ID_LEN {
            return Err("chain_id: 1 to 64 bytes".into());
        }
        let payload = match &self.payload {
            PayloadJson::Transfer {} => Payload::Transfer,
            PayloadJson::Stake {} => Payload::Stake,
            PayloadJson::Unstake {} => Payload::Unstake,
            PayloadJson::Vote { candidates } => Payload::Vote {
                candidates: candidates
                    .iter()
                    .map(|c| public_key(c, "a candidate"))
                    .collect::<Result<_, _>>()?,
            },
            PayloadJson::RegisterBp { p2p_address } => {
                Payload::RegisterBp { p2p_address: p2p_address.clone() }
            }
            PayloadJson::ReportEquivocation { evidence } => {
                let bytes = hex::decode(evidence).map_err(|_| "payload.evidence is not hex".to_string())?;
                let e: Equivocation = borsh::from_slice(&bytes)
                    .map_err(|e| format!("payload.evidence is not encoded evidence: {e}"))?;
                Payload::ReportEquivocation(Box::new(e))
            }
            PayloadJson::Deploy { sql } => Payload::Deploy { sql: sql.clone() },
            PayloadJson::Call { contract, function, args } => Payload::Call {
                contract: *contract,
                function: function.clone(),
                args: args.iter().enumerate().map(|(i, a)| arg_value(a, i)).collect::<Result<_, _>>()?,
            },
            PayloadJson::CreateBranch { name, base_height, producers, mergers } => Payload::CreateBranch {
                name: name.clone(),
                base_height: *base_height,
                producers: producers.iter().map(|p| public_key(p, "a producer")).collect::<Result<_, _>>()?,
                mergers: mergers.clone(),
            },
            PayloadJson::CreateTag { name, height } => {
                Payload::CreateTag { name: name.clone(), height: *height }
            }
            PayloadJson::Merge { source, strategy, upto, upto_hash } => Payload::Merge {
                source: source.clone(),
                strategy: MergeStrategy::parse(strategy).ok_or_else(|| {
                    format!("payload.strategy {strategy:?}: replay, three-way, ours or theirs")
                })?,
                upto: *upto,
                upto_hash: *upto_hash,
            },
            PayloadJson::CreatePrivateBranch { name, base_height, producers, mergers, members } => {
                Payload::CreatePrivateBranch {
                    name: name.clone(),
                    base_height: *base_height,
                    producers: producers
                        .iter()
                        .map(|p| public_key(p, "a producer"))
                        .collect::<Result<_, _>>()?,
                    mergers: mergers.clone(),
                    members: members.iter().map(|m| public_key(m, "a member")).collect::<Result<_, _>>()?,
                }
            }
            PayloadJson::MergePrivate { source, upto, upto_hash, carried } => Payload::MergePrivate {
                source: source.clone(),
                upto: *upto,
                upto_hash: *upto_hash,
                carried: carried
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        hex::decode(&c.tx)
                            .map(|tx| CarriedTx { height: c.height, tx })
                            .map_err(|e| format!("payload.carried[{i}].tx: not hex: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            },
            PayloadJson::RaftAdmin { op, node_key, address } => {
                let node_key = public_key(node_key, "payload.node_key")?;
                let admin = match (op.as_str(), address) {
                    ("add_voter", Some(address)) => {
                        RaftAdmin::AddVoter { node_key, address: address.clone() }
                    }
                    ("add_voter", None) => {
                        return Err("payload.address: add_voter needs the voter's address".into())
                    }
                    ("remove_voter", None) => RaftAdmin::RemoveVoter { node_key },
                    ("transfer_leader", None) => RaftAdmin::TransferLeader { node_key },
                    ("remove_voter" | "transfer_leader", Some(_)) => {
                        return Err(format!("payload.address: {op} takes no address"))
                    }
                    _ => {
                        return Err(format!("payload.op {op:?}: add_voter, remove_voter or transfer_leader"))
                    }
                };
                Payload::RaftAdmin(admin)
            }
            PayloadJson::RepoAdmin { op, member, role, node_key, address } => {
                let key = |k: &Option<String>| -> Result<PublicKey, String> {
                    public_key(
                        k.as_deref().ok_or(format!("payload.node_key: {op} needs it"))?,
                        "payload.node_key",
                    )
                };
                let admin = match (op.as_str(), member, role, node_key, address) {
                    ("set_member", Some(member), Some(role), None, None) => RepoAdmin::SetMember {
                        member: *member,
                        role: MemberRole::parse(role)
                            .ok_or_else(|| format!("payload.role {role:?}: read, write or admin"))?,
                    },
                    ("remove_member", Some(member), None, None, None) => {
                        RepoAdmin::RemoveMember { member: *member }
                    }
                    ("allow_node", None, None, Some(_), Some(address)) => {
                        RepoAdmin::AllowNode { node_key: key(node_key)?, address: address.clone() }
                    }
                    ("deny_node", None, None, Some(_), None) => {
                        RepoAdmin::DenyNode { node_key: key(node_key)? }
                    }
                    ("set_member" | "remove_member" | "allow_node" | "deny_node", ..) => {
                        return Err(format!(
                            "payload: {op} takes {}",
                            match op.as_str() {
                                "set_member" => "member and role",
                                "remove_member" => "member",
                                "allow_node" => "node_key and address",
                                _ => "node_key",
                            }
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "payload.op {op:?}: set_member, remove_member, allow_node or deny_node"
                        ))
                    }
                };
                Payload::RepoAdmin(admin)
            }
        };
        Ok(TxBody {
            version: TxBody::version_for(&self.branch),
            chain_id,
            branch: self.branch.clone(),
            nonce: self.nonce.ok_or("nonce is missing")?,
            sender,
            recipient: self.recipient.unwrap_or_else(|| sender.address()),
            amount: amount(&self.amount, "amount")?,
            fee: amount(&self.fee, "fee")?,
            payload,
        })
    }

    /// `body` in this form, every field written.
    pub fn of(body: &TxBody) -> TxJson {
        let keys = |k: &[PublicKey]| k.iter().map(|k| hex::encode(k.0)).collect();
        let payload = match &body.payload {
            Payload::Transfer => PayloadJson::Transfer {},
            Payload::Stake => PayloadJson::Stake {},
            Payload::Unstake => PayloadJson::Unstake {},
            Payload::Vote { candidates } => PayloadJson::Vote { candidates: keys(candidates) },
            Payload::RegisterBp { p2p_address } => {
                PayloadJson::RegisterBp { p2p_address: p2p_address.clone() }
            }
            Payload::ReportEquivocation(e) => PayloadJson::ReportEquivocation {
                evidence: hex::encode(aergo_primitives::types::to_vec_exact(e.as_ref())),
            },
            Payload::Deploy { sql } => PayloadJson::Deploy { sql: sql.clone() },
            Payload::Call { contract, function, args } => PayloadJson::Call {
                contract: *contract,
                function: function.clone(),
                args: args.iter().map(arg_json).collect(),
            },
            Payload::CreateBranch { name, base_height, producers, mergers } => PayloadJson::CreateBranch {
                name: name.clone(),
                base_height: *base_height,
                producers: keys(producers),
                mergers: mergers.clone(),
            },
            Payload::CreateTag { name, height } => {
                PayloadJson::CreateTag { name: name.clone(), height: *height }
            }
            Payload::Merge { source, strategy, upto, upto_hash } => PayloadJson::Merge {
                source: source.clone(),
                strategy: strategy.name().to_string(),
                upto: *upto,
                upto_hash: *upto_hash,
            },
            Payload::CreatePrivateBranch { name, base_height, producers, mergers, members } => {
                PayloadJson::CreatePrivateBranch {
                    name: name.clone(),
                    base_height: *base_height,
                    producers: keys(producers),
                    mergers: mergers.clone(),
                    members: keys(members),
                }
            }
            Payload::MergePrivate { source, upto, upto_hash, carried } => PayloadJson::MergePrivate {
                source: source.clone(),
                upto: *upto,
                upto_hash: *upto_hash,
                carried: carried
                    .iter()
                    .map(|c| CarriedJson { height: c.height, tx: hex::encode(&c.tx) })
                    .collect(),
            },
            Payload::RaftAdmin(admin) => PayloadJson::RaftAdmin {
                op: admin.name().to_string(),
                node_key: hex::encode(admin.node_key().0),
                address: match admin {
                    RaftAdmin::AddVoter { address, .. } => Some(address.clone()),
                    _ => None,
                },
            },
            Payload::RepoAdmin(admin) => {
                let (member, role, node_key, address) = match admin {
                    RepoAdmin::SetMember { member, role } => {
                        (Some(*member), Some(role.name().into()), None, None)
                    }
                    RepoAdmin::RemoveMember { member } => (Some(*member), None, None, None),
                    RepoAdmin::AllowNode { node_key, address } => {
                        (None, None, Some(hex::encode(node_key.0)), Some(address.clone()))
                    }
                    RepoAdmin::DenyNode { node_key } => (None, None, Some(hex::encode(node_key.0)), None),
                };
                PayloadJson::RepoAdmin { op: admin.name().to_string(), member, role, node_key, address }
            }
        };
        TxJson {
            chain_id: Some(body.chain_id.clone()),
            branch: body.branch.clone(),
            nonce: Some(body.nonce),
            sender: Some(hex::encode(body.sender.0)),
            recipient: Some(body.recipient),
            amount: body.amount.to_string(),
            fee: body.fee.to_string(),
            payload,
        }
    }
}

/// A signed transaction as `aergo tx sign` writes it and `aergo tx send` reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SignedTxFile {
    pub hash: Hash,
    /// Hex of the encoded transaction: what `send_tx` takes.
    pub tx: String,
    pub body: TxJson,
}

#[cfg(test)]
mod tests;
