#!/usr/bin/env bash
# Makes the audit keys of a Kubernetes deployment (deploy/kubernetes/deployment.yaml explains
# why both replicas share them): an Ed25519 signing key made by `passerelle audit key`, its
# public key line, the 32-byte body-digest secret, the store's key-encryption key
# (`store.key`) and the subject key (`subject.key`), in OUTPUT_DIR (owner-only). Then prints
# the command that stores them as the Secret `passerelle-audit`.
#
#   deploy/kubernetes/new-audit-keys.sh ./audit-keys          # `passerelle` on PATH, or
#   PASSERELLE=target/release/passerelle deploy/kubernetes/new-audit-keys.sh ./audit-keys
#
# Keep audit-signing-key.pub with your archives: `passerelle audit verify --file EXPORT.jsonl
# --key audit-signing-key.pub` needs it, and after a rotation the old one goes into
# audit.trusted_keys. Keep the private files only as long as it takes to create the Secret
# (or in your secret manager).
set -euo pipefail

out=${1:?usage: new-audit-keys.sh OUTPUT_DIR}
passerelle=${PASSERELLE:-passerelle}
umask 077
mkdir -p "$out"
out=$(cd "$out" && pwd)
for f in audit-signing-key audit-secret store.key subject.key; do
    if [[ -e "$out/$f" ]]; then
        echo "$out/$f exists: refusing to replace a key (move it away first)" >&2
        exit 1
    fi
done
if [[ "$out" == *"'"* ]]; then
    echo "OUTPUT_DIR must not contain a single quote" >&2
    exit 1
fi

# `passerelle audit key` reads a configuration and generates the signing key into its data
# directory when there is none: give it the smallest configuration that loads.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/schemas" "$work/agreements"
: > "$work/partners.toml"
printf "data_dir = '%s'\nschemas_dir = 'schemas'\n[tls]\ninsecure_plaintext = true\n" "$out" > "$work/passerelle.toml"
"$passerelle" audit key --config "$work/passerelle.toml" > "$out/audit-signing-key.pub"
head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' > "$out/audit-secret"
# The store's key-encryption key: every replica unwraps the same data keys with it.
head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' > "$out/store.key"
# The subject key: every replica digests a person's identifiers alike, so either finds the
# disclosures the other recorded.
head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' > "$out/subject.key"
chmod 0644 "$out/audit-signing-key.pub"

echo "Public key (key id second): $(cat "$out/audit-signing-key.pub")"
echo "Store the private files as the Secret the Deployment mounts:"
echo "  kubectl -n passerelle create secret generic passerelle-audit \\"
echo "    --from-file=audit-signing-key=$out/audit-signing-key --from-file=audit-secret=$out/audit-secret \\"
echo "    --from-file=store.key=$out/store.key --from-file=subject.key=$out/subject.key"
