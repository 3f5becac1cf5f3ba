#!/usr/bin/env bash
# Redraw every picture of docs/ from the stores of the example configs, in the current
# lossatlas style (run after changing a probe's plot or engine/lossatlas.mplstyle).
#
#   bash docs/images/redraw.sh STORES     # STORES: a folder holding the stores below
#
# Make the stores first (minutes to an hour on a CPU; each command prints its time):
#   lossatlas run examples/quickstart.toml --store STORES/atlas.zarr
#   lossatlas run trained.toml --store STORES/atlas.zarr     (docs/quickstart.md, step 4)
#   lossatlas run examples/trace-eq31.toml --store STORES/tr.zarr
#   lossatlas run examples/projection-curvature-saddles.toml --store STORES/pc.zarr
#   lossatlas run examples/dss-counterexample.toml --store STORES/dss.zarr
#   lossatlas run examples/dss-quadratic-fb2017.toml --store STORES/dss.zarr
#   lossatlas run examples/interpolation-digits.toml --store STORES/gvs.zarr
#   lossatlas run examples/trajectory-deep-linear.toml --store STORES/deep.zarr
#   lossatlas run examples/hessian-directions-digits.toml --store STORES/hd.zarr
#   lossatlas run examples/pca-trajectory-digits.toml --store STORES/pca.zarr
#   lossatlas run examples/rebasin-digits.toml --store STORES/rebasin.zarr
#   lossatlas run examples/curve-digits.toml --store STORES/curve.zarr
#   lossatlas run examples/lmc-instability-digits.toml --store STORES/lmc.zarr
#   lossatlas run examples/paths-digits.toml --store STORES/paths.zarr
#   lossatlas run examples/goldilocks-fig2.toml --store STORES/gl2.zarr
#   lossatlas run examples/goldilocks-fig3.toml --store STORES/gl3.zarr
#   lossatlas run examples/goldilocks-fig4.toml --store STORES/gl4.zarr
#   lossatlas run examples/goldilocks-fig5.toml --store STORES/gl.zarr
#   lossatlas run examples/goldilocks-fig6.toml --store STORES/gl6.zarr
#   lossatlas run examples/goldilocks-radius.toml --store STORES/glr.zarr
# A picture whose store is missing is skipped with a note. The report's picture needs
# headless Chromium (Debian: apt-get install chromium).
set -uo pipefail
stores=${1:?usage: bash docs/images/redraw.sh STORES}
out=$(cd "$(dirname "$0")" && pwd)
draw() {  # draw STORE IMAGE RUN/STEP... [options]
  local store=$stores/$1 image=$out/$2
  shift 2
  if [ ! -d "$store" ]; then
    echo "skipped $image: no $store" >&2
    return
  fi
  lossatlas plot "$store" "$@" -o "$image" --dpi 110 || echo "FAILED: $image" >&2
}
draw atlas.zarr quickstart-line.png quickstart/line
draw atlas.zarr quickstart-interpolation.png trained/init-to-trained
draw tr.zarr trace-eq31.png trace-eq31/eq31
draw pc.zarr projection-curvature-eq26.png projection-curvature-saddles/eq26
draw dss.zarr dss-counterexample.png dss-counterexample/dss --logy
draw dss.zarr dss-quadratic-fb2017.png dss-quadratic-fb2017/dss --logy
draw gvs.zarr interpolation-digits.png interpolation-digits/lines --logy
draw gvs.zarr trajectory-digits.png interpolation-digits/path --logy
draw gvs.zarr interpolation-digits-train.png interpolation-digits/train
draw deep.zarr trajectory-deep-linear.png trajectory-deep-linear/path --logy
draw deep.zarr interpolation-deep-linear.png trajectory-deep-linear/lines --logy
draw hd.zarr hessian-directions-digits.png hessian-directions-digits/maps
draw pca.zarr pca-trajectory-digits.png pca-trajectory-digits/map --logy
draw pca.zarr pca-trajectory-digits-surface.png pca-trajectory-digits/map --surface --logy
draw rebasin.zarr align-digits.png rebasin-digits/align
draw rebasin.zarr rebasin-digits-lines.png rebasin-digits/lines
draw curve.zarr curve-digits.png curve-digits/bezier
draw lmc.zarr lmc-instability-digits.png lmc-instability-digits/instability
draw paths.zarr neb-digits.png paths-digits/neb
draw paths.zarr paths-digits.png paths-digits/lines paths-digits/curve paths-digits/neb \
  paths-digits/dss
draw gl2.zarr goldilocks-fig2.png goldilocks-fig2/fig2
draw gl3.zarr goldilocks-fig3.png goldilocks-fig3/zone
draw gl4.zarr goldilocks-fig4.png goldilocks-fig4/relu_32 goldilocks-fig4/relu_64x64 \
  goldilocks-fig4/relu_32x32x32 goldilocks-fig4/tanh_32x32 goldilocks-fig4/cnn
draw gl.zarr goldilocks-fig5.png goldilocks-fig5/profile
draw gl.zarr goldilocks-fig5a.png goldilocks-fig5/depth1 goldilocks-fig5/profile \
  goldilocks-fig5/depth3 goldilocks-fig5/depth4
draw gl6.zarr goldilocks-fig6.png goldilocks-fig6/fig6
draw glr.zarr goldilocks-radius.png goldilocks-radius/radius
# The report: a screenshot of its first screen in headless Chromium.
if [ -d "$stores/atlas.zarr" ] && command -v chromium >/dev/null 2>&1; then
  (cd "$stores" && lossatlas report atlas.zarr -o report.html -q)
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --hide-scrollbars --window-size=1280,1100 --screenshot="$out/report.png" \
    "file://$(cd "$stores" && pwd)/report.html" >/dev/null 2>&1 || echo "FAILED: report.png" >&2
  rm -rf "$profile"
else
  echo "skipped $out/report.png: no atlas.zarr or no chromium" >&2
fi
