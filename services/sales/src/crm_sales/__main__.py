from crm_sales.app import create_service
from crm_sales.settings import SalesSettings
from crm_shared.service import serve


def main() -> None:
    settings = SalesSettings()
    serve(create_service(settings), settings)


if __name__ == "__main__":
    main()
