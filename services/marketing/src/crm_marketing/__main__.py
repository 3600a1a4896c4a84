from crm_marketing.app import create_service
from crm_marketing.settings import MarketingSettings
from crm_shared.service import serve


def main() -> None:
    settings = MarketingSettings()
    serve(create_service(settings), settings)


if __name__ == "__main__":
    main()
