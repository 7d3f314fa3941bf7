# The pinned Schemathesis release (PyPI) of tests/contract/schemathesis_test.sh,
# installed by scripts/install-deps.sh into its own virtual environment.
# shellcheck disable=SC2034 # read by the scripts that source this file
SCHEMATHESIS_VERSION="4.32.5"
