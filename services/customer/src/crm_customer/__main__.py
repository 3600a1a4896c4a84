from crm_customer.app import create_service
from crm_customer.settings import CustomerSettings
from crm_shared.service import serve


def main() -> None:
    settings = CustomerSettings()
    serve(create_service(settings), settings)


if __name__ == "__main__":
    main()
