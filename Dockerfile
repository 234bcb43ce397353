# CPU image by default; for a Jetson, pick an L4T base that matches its JetPack, e.g.
#   docker build --build-arg BASE_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0 -t gtn-deploy:jetson .
# and --build-arg EXTRAS= : JetPack images bring TensorRT and their own torch, and the light core
# (plan, bundle verify, bench) needs neither the torch pin nor nncf.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG EXTRAS=train,quant
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
    && (command -v pip3 >/dev/null || apt-get install -y --no-install-recommends python3-pip) \
    && (apt-get install -y --no-install-recommends dataset-fashion-mnist || true) \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/gtn_deploy
COPY pyproject.toml README.md ./
COPY gtn_deploy ./gtn_deploy
COPY device_profiles ./device_profiles
# A plain install: the wheel carries device_profiles/ inside the package.
RUN python3 -m pip install ".${EXTRAS:+[$EXTRAS]}"

CMD ["gtnd", "--help"]
