#!/bin/sh
# Regenerates the Artifactory payload fixtures in fixtures/artifactory/ (valid tarballs modelled
# on composer22's example.com-development-video-mobile-1.0.1-22 and one tarball per invalid kind)
# from the generator in tests/artifactory.rs (module `fixtures`), then checks them.
set -eu
cd "$(dirname "$0")/.."
mkdir -p fixtures/artifactory
ROLLBRIDGE_WRITE_FIXTURES=1 cargo test --test artifactory fixtures_match_the_generator -- --exact
ls -l fixtures/artifactory
