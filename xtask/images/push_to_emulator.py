"""`podman push <ecr-uri>:<tag>` for the AWS emulator: records the locally built image in the
emulator's ECR (PutImage with a manifest of its real config and layer digests), so that
DescribeImages finds it and the Fargate simulator "pulls" it from the local storage.

Usage: push_to_emulator.py <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>
"""

import json
import os
import subprocess
import sys

import boto3


def main(image: str) -> int:
    uri, tag = image.rsplit(":", 1)
    host, repository = uri.split("/", 1)
    region = host.split(".")[3]
    inspect = json.loads(subprocess.run(["podman", "image", "inspect", image], check=True, capture_output=True).stdout)[0]
    layers = inspect["RootFS"]["Layers"]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 0, "digest": "sha256:" + inspect["Id"]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 0, "digest": d} for d in layers],
    }
    ecr = boto3.client("ecr", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=region)
    try:
        ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        pass  # pushing the same image again, as podman would
    print(f"pushed {image} ({len(layers)} layers, {inspect['Size'] / 1e6:.0f} MB) to the emulator's ECR")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
