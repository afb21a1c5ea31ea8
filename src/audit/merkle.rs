//! Merkle trees over audit entries, as Certificate Transparency builds them (RFC 6962 §2.1,
//! RFC 9162 §2.1): the hash of a group of entries, and the proof that one entry is in it.
//!
//! This is the ground for signing once per group commit instead of once per receipt: the gateway
//! signs the root of the group's entries, and each receipt carries its entry's inclusion proof,
//! which anyone checks with SHA-256 alone. The same hashes make a transparency log whose
//! consistency proofs can follow without changing what a receipt holds.
//!
//! # The hashes (to recompute them with another program)
//!
//! - a leaf: `SHA-256(0x00 || data)`;
//! - an inner node: `SHA-256(0x01 || left || right)`;
//! - the root of `n > 1` leaves: the node over the root of the first `k` leaves and the root of
//!   the rest, `k` the largest power of two below `n`; of one leaf, its leaf hash; of none,
//!   `SHA-256()`.
//!
//! The two prefixes keep a leaf from passing for a node (a second preimage). An inclusion proof
//! is the list of sibling hashes from the leaf up, exactly RFC 9162's audit path, so a CT
//! verifier checks it unchanged.

use crate::digest::sha256;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0u8][..], data].concat())
}

/// The hash of an inner node over `left` and `right`.
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut bytes = [0u8; 65];
    bytes[0] = 1;
    bytes[1..33].copy_from_slice(left);
    bytes[33..].copy_from_slice(right);
    sha256(&bytes)
}

/// A tree over a group of leaf hashes, every level kept, so that each leaf's proof is read off
/// without hashing again: building it costs one hash per inner node, `n - 1` in all.
#[derive(Debug, Clone)]
pub struct Tree {
    /// `levels[0]` the leaf hashes; each next level pairs the one below from the left, its odd
    /// last node carried up unchanged (which gives RFC 6962's split at the largest power of two).
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves`, leaf hashes in order.
    pub fn new(leaves: Vec<Hash>) -> Tree {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let level = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [alone] => *alone,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(level);
        }
        Tree { levels }
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|top| top.first()) {
            Some(root) => *root,
            None => sha256(b""),
        }
    }

    /// The inclusion proof (audit path) of leaf `index`, from the leaf up; `None` past the end.
    pub fn proof(&self, index: usize) -> Option<Vec<Hash>> {
        if index >= self.levels[0].len() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut at = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = at ^ 1;
            // The last node of an odd level has no sibling: it is carried up, adding nothing.
            if let Some(hash) = level.get(sibling) {
                path.push(*hash);
            }
            at /= 2;
        }
        Some(path)
    }
}

/// Whether `proof` shows that `leaf` (a leaf hash) is leaf `index` of a tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            hash = node_hash(sibling, &hash);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && hash == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{decode_hex, to_hex};

    /// RFC 6962's definition, word for word: the root of `leaves` by recursive split.
    fn rfc_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => sha256(b""),
            1 => leaves[0],
            n => {
                let k = split(n);
                node_hash(&rfc_root(&leaves[..k]), &rfc_root(&leaves[k..]))
            }
        }
    }

    /// RFC 6962's PATH(m, D[n]).
    fn rfc_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n);
        if m < k {
            [rfc_path(m, &leaves[..k]), vec![rfc_root(&leaves[k..])]].concat()
        } else {
            [rfc_path(m - k, &leaves[k..]), vec![rfc_root(&leaves[..k])]].concat()
        }
    }

    /// The largest power of two below `n` (n > 1).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_be_bytes())).collect()
    }

    #[test]
    fn roots_and_proofs_are_rfc_6962s_for_every_size_and_leaf() {
        for n in 0..=70 {
            let leaves = leaves(n);
            let tree = Tree::new(leaves.clone());
            assert_eq!(tree.root(), rfc_root(&leaves), "root of {n}");
            for (m, leaf) in leaves.iter().enumerate() {
                let proof = tree.proof(m).unwrap();
                assert_eq!(proof, rfc_path(m, &leaves), "path of {m} in {n}");
                assert!(verify_inclusion(leaf, m as u64, n as u64, &proof, &tree.root()), "{m} in {n}");
            }
            assert_eq!(tree.proof(n), None);
        }
    }

    #[test]
    fn the_certificate_transparency_test_vectors_give_the_same_roots() {
        // The inputs and roots of the CT reference implementations' Merkle tree tests.
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, root) in roots.iter().enumerate() {
            let tree = Tree::new(inputs[..=n].iter().map(|d| leaf_hash(d)).collect());
            assert_eq!(to_hex(&tree.root()), *root, "root of the first {}", n + 1);
        }
        assert_eq!(
            Tree::new(Vec::new()).root().to_vec(),
            decode_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap()
        );
    }

    #[test]
    fn a_proof_fails_for_another_leaf_place_size_or_root_or_once_changed() {
        let leaves = leaves(13);
        let tree = Tree::new(leaves.clone());
        let (root, proof) = (tree.root(), tree.proof(6).unwrap());
        assert!(verify_inclusion(&leaves[6], 6, 13, &proof, &root));
        assert!(!verify_inclusion(&leaves[7], 6, 13, &proof, &root), "another leaf");
        assert!(!verify_inclusion(&leaves[6], 7, 13, &proof, &root), "another place");
        assert!(!verify_inclusion(&leaves[6], 6, 8, &proof, &root), "another size");
        // The size only shapes the path: 13 and 14 leaves give leaf 6 the same shape, so the
        // signed root's message must bind the size (as a CT tree head does).
        assert!(verify_inclusion(&leaves[6], 6, 14, &proof, &root));
        assert!(!verify_inclusion(&leaves[6], 6, 13, &proof, &leaves[0]), "another root");
        assert!(!verify_inclusion(&leaves[6], 13, 13, &proof, &root), "past the end");
        assert!(!verify_inclusion(&leaves[6], 6, 13, &proof[..proof.len() - 1], &root), "a sibling short");
        let mut longer = proof.clone();
        longer.push(root);
        assert!(!verify_inclusion(&leaves[6], 6, 13, &longer, &root), "a sibling too many");
        for i in 0..proof.len() {
            let mut changed = proof.clone();
            changed[i][0] ^= 1;
            assert!(!verify_inclusion(&leaves[6], 6, 13, &changed, &root), "sibling {i} changed");
        }
        // A leaf is never an inner node: the root of two leaves is not a leaf of one.
        let two = Tree::new(leaves[..2].to_vec());
        assert!(!verify_inclusion(&two.root(), 0, 1, &[], &leaf_hash(&[&leaves[0][..], &leaves[1][..]].concat())));
    }
}
