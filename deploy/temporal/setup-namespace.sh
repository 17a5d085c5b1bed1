#!/bin/sh
# The namespace the service runs in, with its retention, and the service's custom search
# attributes. Idempotent: an existing namespace gets the configured retention, attributes that
# exist already are left as they are.
#
# SQL visibility (PostgreSQL) has a fixed number of preallocated columns per type and namespace:
# 10 Keyword, 3 each of Text, Int, Double, Bool, Datetime and KeywordList. The service uses 7
# Keyword attributes (contracts/provisioning.ts), so 3 Keyword slots are left for operators.
set -eu

until temporal operator cluster health | grep -q SERVING; do sleep 2; done

if temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
  temporal operator namespace update --namespace "$TEMPORAL_NAMESPACE" --retention "$TEMPORAL_RETENTION"
else
  temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" --retention "$TEMPORAL_RETENTION"
fi

# A new namespace reaches every frontend through the namespace cache; retry until it does.
attempt=0
until temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" \
  --name TenantId --type Keyword \
  --name DeviceId --type Keyword \
  --name DeviceSerial --type Keyword \
  --name ProvisioningStatus --type Keyword \
  --name ProvisioningMethod --type Keyword \
  --name BulkJobId --type Keyword \
  --name Site --type Keyword; do
  attempt=$((attempt + 1))
  [ "$attempt" -lt 30 ] || exit 1
  sleep 2
done
