"""What every layer shares, and nothing below it: the workload spec and its types, phases,
quantities, the Kubernetes kinds Runplane writes and reads, and its labels. Pure: no I/O, no
FastAPI, no database, no Kubernetes client; policies, rendering, the reconciler and the cluster
backends all build on it, and it imports none of them."""
