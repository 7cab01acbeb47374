# Checks that moto refuses a second If-None-Match:* PUT (412); concurrent Delta commits on S3 rely on it.
import socket, subprocess, sys, time
import boto3, botocore
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    for _ in range(150):
        try:
            s3.list_buckets(); break
        except Exception:
            time.sleep(0.2)
    s3.create_bucket(Bucket="ci-check")
    s3.put_object(Bucket="ci-check", Key="k", Body=b"1", IfNoneMatch="*")
    try:
        s3.put_object(Bucket="ci-check", Key="k", Body=b"2", IfNoneMatch="*")
        print("moto accepted a second If-None-Match:* PUT"); sys.exit(1)
    except botocore.exceptions.ClientError as e:
        code = e.response["ResponseMetadata"]["HTTPStatusCode"]
        print(f"moto conditional put: second create refused with HTTP {code}")
        sys.exit(0 if code == 412 else 1)
finally:
    p.terminate()
