"""django-q2 task functions: one-line calls into services."""

from .services import deliveries_due, delivery_attempt, job_mail_send


def deliver(delivery_id: int) -> None:
    delivery_attempt(delivery_id)


def deliver_due() -> int:
    return len(deliveries_due())


def send_job_mail(job_id: int) -> bool:
    return job_mail_send(job_id)
