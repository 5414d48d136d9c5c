#!/usr/bin/env bash
# Build and test CharRnn: ./build.sh --target=Test (the default). Other targets: Clean, Build, Publish.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet tool restore >/dev/null
exec dotnet cake build.cake "$@"
