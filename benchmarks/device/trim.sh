# usage: trim.sh SITE_DIR   -- removes what voidflow's flow never uses
set -e
S=$1
cd $S
rm -rf ray/jars ray/rllib ray/tune ray/train ray/serve ray/llm ray/data ray/workflow
# dashboard frontend (static JS); keep an empty build dir so the dashboard head starts
rm -rf ray/dashboard/client/build && mkdir -p ray/dashboard/client/build/static && echo '<html></html>' > ray/dashboard/client/build/index.html
# virtualenv's embedded pip/setuptools/wheel seed wheels (only ray runtime_env pip uses virtualenv)
rm -rf virtualenv/seed/wheels/embed/*.whl 2>/dev/null || true
find . -name __pycache__ -type d -prune -exec rm -rf {} +
find . -type d \( -name tests -o -name test \) -prune -exec rm -rf {} +
find . -name "*.pyi" -delete
find . -name "*.pyc" -delete
