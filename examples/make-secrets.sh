#!/usr/bin/env bash
# Creates the secrets of a cxrtune cluster as files readable only by their owner, from random values:
#   DIR/ray_auth_token      Ray's token (RAY_AUTH_MODE=token): every node and every `ray job submit` needs it
#   DIR/mlflow-server.env   for the `mlflow server --app-name basic-auth` process only: the admin user it
#                           creates on first start, and Flask's CSRF key
#   DIR/mlflow-client.env   for the search driver only: MLflow's standard client variables
# Nothing is printed, nothing goes on a command line, an existing file is never overwritten (re-running keeps
# the cluster's secrets). Usage: examples/make-secrets.sh DIR
#   Kubernetes (examples/kuberay-raycluster.yaml):
#     kubectl create secret generic cxrtune-ray-token --from-file=auth_token=DIR/ray_auth_token
#     kubectl create secret generic cxrtune-mlflow-server --from-env-file=DIR/mlflow-server.env
#     kubectl create secret generic cxrtune-mlflow-client --from-env-file=DIR/mlflow-client.env
#   VM head (examples/ray-cluster-gpu.yaml) runs it itself at first start; see docs/security.md.
set -euo pipefail
dir=${1:?usage: make-secrets.sh DIR}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }  # 256 bits, URL-safe

if [ ! -e "$dir/ray_auth_token" ]; then
  printf '%s' "$(random)" > "$dir/ray_auth_token"
fi
if [ ! -e "$dir/mlflow-server.env" ]; then
  admin_password=$(random)
  {
    echo "MLFLOW_AUTH_ADMIN_USERNAME=admin"
    echo "MLFLOW_AUTH_ADMIN_PASSWORD=$admin_password"
    echo "MLFLOW_FLASK_SERVER_SECRET_KEY=$(random)"
  } > "$dir/mlflow-server.env"
  # The driver logs as the admin here; give people their own users (docs/security.md, "Who may log in").
  {
    echo "MLFLOW_TRACKING_USERNAME=admin"
    echo "MLFLOW_TRACKING_PASSWORD=$admin_password"
  } > "$dir/mlflow-client.env"
fi
chmod 600 "$dir"/ray_auth_token "$dir"/mlflow-server.env "$dir"/mlflow-client.env
