"""The reference vendor's Azure Face and CompreFace protocols, with their own SDKs, directly."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from azure.ai.vision.face import FaceAdministrationClient, FaceClient
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from compreface import CompreFace

from refvendor import samples
from refvendor.azure import DEFAULT_KEY as AZURE_KEY
from refvendor.compreface import DEFAULT_KEY as COMPREFACE_KEY

DETECT = {
    "detection_model": FaceDetectionModel.DETECTION03,
    "recognition_model": FaceRecognitionModel.RECOGNITION04,
    "return_face_id": True,
}


def compreface(url: str) -> Any:
    domain, port = url.rsplit(":", 1)
    return CompreFace(domain, port)


def test_compreface_recognizes_an_enrolled_subject_on_a_0_1_scale(running_vendor: Any) -> None:
    recognition = compreface(running_vendor.url).init_face_recognition(COMPREFACE_KEY)
    collection = recognition.get_face_collection()
    added = collection.add(samples.astronaut_jpeg(), "rv-astronaut")
    other = collection.add(samples.lfw_face_jpeg(samples.detectable_lfw_indices()[0]), "rv-lfw")

    answer = recognition.recognize(samples.astronaut_variant_jpeg(), {"prediction_count": 2})

    [face] = answer["result"]
    best, second = face["subjects"]
    assert best["subject"] == "rv-astronaut" and 0.99 <= best["similarity"] <= 1
    assert second["similarity"] < 0.5
    assert collection.delete(added["image_id"])["subject"] == "rv-astronaut"
    assert collection.delete(other["image_id"])["subject"] == "rv-lfw"


def test_compreface_refuses_plugins_it_cannot_compute_and_faceless_images(
    running_vendor: Any,
) -> None:
    detection = compreface(running_vendor.url).init_face_detection(COMPREFACE_KEY)

    assert detection.detect(samples.astronaut_jpeg(), {"face_plugins": "age"})["code"] == 26
    assert detection.detect(samples.no_face_jpeg())["code"] == 28


def test_compreface_refuses_a_wrong_key(running_vendor: Any) -> None:
    detection = compreface(running_vendor.url).init_face_detection("wrong")
    assert detection.detect(samples.astronaut_jpeg())["code"] == 10


def test_azure_identifies_through_a_large_person_group(running_vendor: Any) -> None:
    credential = AzureKeyCredential(AZURE_KEY)
    admin = FaceAdministrationClient(running_vendor.url, credential)
    face = FaceClient(running_vendor.url, credential)
    admin.large_person_group.create("rv-group", name="g")
    person = admin.large_person_group.create_person("rv-group", name="astronaut")
    admin.large_person_group.add_face("rv-group", person.person_id, samples.astronaut_jpeg())
    admin.large_person_group.begin_train("rv-group", polling_interval=0.01).result()

    [probe] = face.detect(samples.astronaut_variant_jpeg(), **DETECT)
    [result] = face.identify_from_large_person_group(
        face_ids=[probe.face_id], large_person_group_id="rv-group"
    )

    assert [c.person_id for c in result.candidates] == [person.person_id]
    assert 0.99 <= result.candidates[0].confidence <= 1
    assert admin.large_person_group.get_training_status("rv-group").status == "succeeded"
    admin.large_person_group.delete("rv-group")


def test_azure_v1_detects_from_a_chunked_stream(running_vendor: Any) -> None:
    from azure.cognitiveservices.vision.face import FaceClient as V1Client
    from msrest.authentication import CognitiveServicesCredentials

    client = V1Client(running_vendor.url, CognitiveServicesCredentials(AZURE_KEY))
    [face] = client.face.detect_with_stream(io.BytesIO(samples.astronaut_jpeg()))
    assert face.face_id and face.face_rectangle.width > 0


def test_azure_fetches_no_urls_and_computes_no_attributes(running_vendor: Any) -> None:
    url = f"{running_vendor.url}/face/v1.0/detect"
    headers = {"Ocp-Apim-Subscription-Key": AZURE_KEY}

    by_url = httpx.post(url, json={"url": "http://169.254.169.254/"}, headers=headers)
    attributes = httpx.post(
        url,
        params={"returnFaceAttributes": "age"},
        content=samples.astronaut_jpeg(),
        headers={**headers, "content-type": "application/octet-stream"},
    )

    assert by_url.status_code == 400 and by_url.json()["error"]["code"] == "InvalidURL"
    assert attributes.status_code == 400 and attributes.json()["error"]["code"] == "BadArgument"


def test_azure_refuses_a_wrong_key(running_vendor: Any) -> None:
    face = FaceClient(running_vendor.url, AzureKeyCredential("wrong"))
    with pytest.raises(HttpResponseError) as raised:
        face.detect(samples.astronaut_jpeg(), **DETECT)
    assert raised.value.status_code == 401
